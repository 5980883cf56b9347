//! `ozbridge setup github` in a real browser: headless Chromium, driven through
//! chromedriver, opens the setup page, presses its button, goes through the fake
//! GitHub's manifest pages and back, and the credentials file is written. Runs when
//! Chromium and chromedriver are installed (`.ci/run` installs them); says so when not.

use fantoccini::{ClientBuilder, Locator};
use ozbridge::setup::github::{GithubSetupOptions, start};
use ozbridge::testkit::github::{AppKeys, FakeGithub};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// The first of `candidates` that exists, or the program found on the `PATH`.
fn installed(variable: &str, candidates: &[&str], program: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(variable) {
        return Some(PathBuf::from(path));
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .map(|paths| {
                    std::env::split_paths(&paths)
                        .map(|p| p.join(program))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|path| path.is_file())
}

/// Starts chromedriver on a free loopback port and waits until it says it listens.
async fn chromedriver(binary: &Path) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("started successfully") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "chromedriver did not start");
    // Keep reading its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}"))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[tokio::test]
async fn chromium_registers_the_app_with_one_click() {
    let Some(driver) = installed("CHROMEDRIVER", &["/usr/bin/chromedriver"], "chromedriver") else {
        eprintln!(
            "skipped: chromedriver is not installed (apt-get install chromium chromium-driver; .ci/run does)"
        );
        return;
    };
    let Some(chromium) = installed("CHROMIUM", &["/usr/bin/chromium"], "chromium") else {
        eprintln!(
            "skipped: Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)"
        );
        return;
    };

    let github = FakeGithub::new();
    github.offer_app_keys(AppKeys {
        app_id: 4711,
        private_pem: fixture("test-app-key.pem"),
        public_pem: fixture("test-app-key.pub.pem"),
    });
    let base = github
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ozbridge.env");
    let setup = start(
        GithubSetupOptions {
            public_url: "https://oz.example.com".into(),
            org: Some("acme".into()),
            name: "ozbridge-acme".into(),
            web_url: base.clone(),
            api_url: base,
            env_file: file.clone(),
            force: false,
        },
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();

    let (_driver, driver_url) = chromedriver(&driver).await;
    let profile = tempfile::tempdir().unwrap();
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver_url)
        .await
        .expect("a Chromium session");

    browser.goto(&setup.page_url).await.unwrap();
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Register ozbridge's GitHub App");
    browser
        .find(Locator::Id("create"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let created = browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("created"))
        .await
        .expect("the page GitHub sends the browser back to");
    let text = created.text().await.unwrap();
    assert!(
        text.contains("ozbridge-acme") && text.contains("id 4711"),
        "{text}"
    );
    let back = browser.current_url().await.unwrap();
    assert!(back.as_str().starts_with(&setup.page_url), "{back}");
    browser.close().await.unwrap();

    let app = setup.created().await.unwrap();
    assert_eq!(app.id, 4711);
    assert_eq!(github.registered_apps()[0].org.as_deref(), Some("acme"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    }
    let written = std::fs::read_to_string(&file).unwrap();
    for line in [
        "GITHUB_APP_ID=4711\n",
        "GITHUB_APP_PRIVATE_KEY=-----BEGIN",
        "GITHUB_WEBHOOK_SECRET=",
    ] {
        assert!(written.contains(line), "{line} in {written}");
    }
}

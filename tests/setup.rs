//! `ozbridge setup github` against the fake GitHub's manifest flow, the page's form
//! submitted as a browser would (the browser itself drives it in `setup_browser.rs`),
//! and `ozbridge setup slack`.

use ozbridge::setup::github::{GithubSetupOptions, RunningSetup, start};
use ozbridge::testkit::github::{AppKeys, FakeGithub};
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;

const APP_ID: u64 = 913;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// A fake GitHub that registers Apps with the test key pair.
async fn fake_github() -> (FakeGithub, String) {
    let github = FakeGithub::new();
    github.offer_app_keys(AppKeys {
        app_id: APP_ID,
        private_pem: fixture("test-app-key.pem"),
        public_pem: fixture("test-app-key.pub.pem"),
    });
    let base = github
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    (github, base)
}

fn options(base: &str, env_file: PathBuf) -> GithubSetupOptions {
    GithubSetupOptions {
        public_url: "https://oz.example.com".into(),
        org: None,
        name: "ozbridge-test".into(),
        web_url: base.into(),
        api_url: base.into(),
        env_file,
        force: false,
    }
}

async fn serve(options: GithubSetupOptions) -> RunningSetup {
    start(options, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap()
}

/// The page's form: where it posts, and the manifest it carries.
fn form_of(page: &str) -> (String, String) {
    let attribute = |after: &str| {
        let start = page
            .find(after)
            .unwrap_or_else(|| panic!("{after} in {page}"))
            + after.len();
        let end = start + page[start..].find('"').unwrap();
        unescape(&page[start..end])
    };
    (
        attribute("action=\""),
        attribute("name=\"manifest\" value=\""),
    )
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Opens the page and presses its button: the form goes to GitHub, which sends the
/// browser back to the setup page. Returns the last page's status, its text, and the
/// address GitHub sent the browser back to.
async fn press_the_button(page_url: &str) -> (u16, String, String) {
    let http = reqwest::Client::new();
    let page = http.get(page_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["referrer-policy"],
        "no-referrer",
        "the token in the page's address must not reach GitHub"
    );
    let (action, manifest) = form_of(&page.text().await.unwrap());
    let answer = http
        .post(&action)
        .form(&[("manifest", manifest)])
        .send()
        .await
        .unwrap();
    let back = answer.url().to_string();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap(), back)
}

fn env_lines(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn one_click_registers_the_app_and_writes_credentials_only_the_owner_reads() {
    let (github, base) = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ozbridge.env");
    let setup = serve(options(&base, file.clone())).await;
    let page_url = setup.page_url.clone();
    assert!(page_url.starts_with("http://127.0.0.1:"), "{page_url}");

    let (status, text, back) = press_the_button(&page_url).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("is registered (id 913)"), "{text}");
    let app = setup.created().await.unwrap();
    assert_eq!(app.id, APP_ID);
    assert_eq!(app.slug, "ozbridge-test");
    assert!(
        app.install_url()
            .ends_with("/apps/ozbridge-test/installations/new")
    );

    // What GitHub was asked to register.
    let registered = github.registered_apps();
    assert_eq!(registered.len(), 1);
    let manifest = &registered[0].manifest;
    assert_eq!(registered[0].org, None);
    assert_eq!(
        manifest["hook_attributes"]["url"],
        "https://oz.example.com/github/webhook"
    );
    assert_eq!(manifest["name"], "ozbridge-test");
    assert_eq!(manifest["public"], false);
    assert_eq!(manifest["default_permissions"]["pull_requests"], "write");
    assert!(
        manifest["redirect_url"]
            .as_str()
            .unwrap()
            .starts_with(&page_url)
    );

    // The file: the three settings, readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let lines = env_lines(&file);
    let names: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "GITHUB_APP_ID",
            "GITHUB_APP_PRIVATE_KEY",
            "GITHUB_WEBHOOK_SECRET"
        ]
    );
    assert_eq!(lines[0].1, "913");
    assert!(lines[1].1.starts_with("-----BEGIN") && !lines[1].1.contains('\n'));
    assert!(lines[2].1.len() >= 20);

    // The credentials work: ozbridge signs in as the App with them.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"));
    command
        .args(["check-config", "--online"])
        .env_clear()
        .env("GITHUB_API_URL", &base)
        .envs(lines.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("GitHub: ok (GitHub App `ozbridge`)"),
        "{report}"
    );

    // The way back works once: the same answer again writes nothing.
    let before = std::fs::read_to_string(&file).unwrap();
    let again = reqwest::get(&back).await;
    // The page stopped serving once the App was created.
    assert!(again.is_err(), "{again:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[tokio::test]
async fn a_wrong_or_reused_state_or_code_gets_a_clear_page_and_nothing_written() {
    let (github, base) = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ozbridge.env");
    let setup = serve(options(&base, file.clone())).await;
    let http = reqwest::Client::new();

    // Another path than the page's token: nothing there.
    let root = setup.page_url.rsplit_once('/').unwrap().0;
    assert_eq!(
        http.get(format!("{root}/guess"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{root}/guess/done?code=a&state=b"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // An answer with a state this page did not send.
    let forged = http
        .get(format!("{}/done?code=abc&state=forged", setup.page_url))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let text = forged.text().await.unwrap();
    assert!(
        text.contains("not from this setup") && text.contains("Nothing was written"),
        "{text}"
    );
    assert!(!file.exists());

    // A code GitHub already converted (here: one spent by another setup).
    let page = http
        .get(&setup.page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, manifest) = form_of(&page);
    let state = action.split("state=").nth(1).unwrap().to_owned();
    let other_dir = tempfile::tempdir().unwrap();
    let other = serve(options(&base, other_dir.path().join("other.env"))).await;
    let (status, _, other_back) = press_the_button(&other.page_url).await;
    assert_eq!(status, 200);
    other.created().await.unwrap();
    let spent_code = url::Url::parse(&other_back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let refused = http
        .get(format!(
            "{}/done?code={spent_code}&state={state}",
            setup.page_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("did not hand over") && text.contains("Nothing was written"),
        "{text}"
    );
    assert!(!file.exists());

    // The state was spent on that answer: pressing the button now cannot finish.
    let answer = http
        .post(&action)
        .form(&[("manifest", manifest)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(text.contains("used already"), "{text}");
    assert!(!file.exists());
    assert_eq!(github.registered_apps().len(), 2);
}

#[tokio::test]
async fn an_existing_file_is_kept_unless_forced_and_an_org_gets_its_own_page() {
    let (github, base) = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ozbridge.env");
    std::fs::write(&file, "GITHUB_TOKEN=keep-me\n").unwrap();
    let refused = start(
        options(&base, file.clone()),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await;
    let error = refused
        .err()
        .expect("an existing file stops the setup")
        .to_string();
    assert!(
        error.contains("exists already") && error.contains("--force"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "GITHUB_TOKEN=keep-me\n"
    );

    for (public_url, org, why) in [
        ("http://oz.example.com", None, "https"),
        (
            "https://oz.example.com",
            Some("acme/evil"),
            "organization name",
        ),
    ] {
        let bad = start(
            GithubSetupOptions {
                public_url: public_url.into(),
                org: org.map(str::to_owned),
                ..options(&base, dir.path().join("x.env"))
            },
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await;
        let error = bad.err().unwrap().to_string();
        assert!(error.contains(why), "{error}");
    }

    let setup = serve(GithubSetupOptions {
        org: Some("acme".into()),
        force: true,
        ..options(&base, file.clone())
    })
    .await;
    let page = reqwest::get(&setup.page_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (action, _) = form_of(&page);
    assert!(
        action.starts_with(&format!(
            "{base}/organizations/acme/settings/apps/new?state="
        )),
        "{action}"
    );
    let (status, text, _) = press_the_button(&setup.page_url).await;
    assert_eq!(status, 200, "{text}");
    setup.created().await.unwrap();
    assert_eq!(github.registered_apps()[0].org.as_deref(), Some("acme"));
    assert!(env_lines(&file).iter().any(|(k, _)| k == "GITHUB_APP_ID"));
}

#[tokio::test]
async fn setup_slack_prints_the_create_link_and_checks_the_token_when_set() {
    let slack = ozbridge::testkit::slack::FakeSlack::new("xoxb-setup-token");
    let (api, _) = slack
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let run = |envs: Vec<(&'static str, String)>| async move {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"));
        command
            .args(["setup", "slack", "--url", "https://oz.example.com"])
            .env_clear()
            .envs(envs);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    };
    let output = run(Vec::new()).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("https://api.slack.com/apps?new_app=1&manifest_json="))
        .unwrap_or_else(|| panic!("{text}"));
    let manifest: serde_json::Value = serde_json::from_str(
        &url::Url::parse(link)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "manifest_json")
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(
        manifest["settings"]["event_subscriptions"]["request_url"],
        "https://oz.example.com/slack/events"
    );
    assert!(text.contains("nothing checked yet"), "{text}");

    let output = run(vec![
        ("SLACK_API_URL", api.clone()),
        ("SLACK_BOT_TOKEN", "xoxb-setup-token".into()),
        ("SLACK_SIGNING_SECRET", "signing".into()),
    ])
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Slack: ok (workspace Acme"), "{text}");
    assert!(!text.contains("xoxb-setup-token"), "{text}");

    let output = run(vec![
        ("SLACK_API_URL", api),
        ("SLACK_BOT_TOKEN", "xoxb-wrong".into()),
        ("SLACK_SIGNING_SECRET", "signing".into()),
    ])
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("Slack: FAILED"));
}

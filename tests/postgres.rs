//! The same flow on PostgreSQL (runs when TEST_DATABASE_URL is set; `.ci/run` sets it).

mod common;

use common::{Harness, database_url};

#[tokio::test]
async fn full_flow_and_restart_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let Some(mut h) = Harness::start_with(Some(url), &[]).await else {
        return;
    };
    let comment = h.command(60, "alice", "/oz fix").await;
    h.wait_status_contains(60, "Oz run `").await;
    h.crash_and_restart().await;
    h.wait_reaction(comment, "rocket").await;
    let (_, payload) = h.comment(60, "alice", "/oz fix");
    let _ = payload;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
    assert_eq!(h.status_comments(60).len(), 1);
}

#[tokio::test]
async fn two_replicas_share_the_work_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let Some(mut h) = Harness::start_with(Some(url), &[]).await else {
        return;
    };
    // A second replica on the same database and clock, stepped at once with the first:
    // both claim from the same tables.
    h.add_replica().await;
    let mut comments = Vec::new();
    for number in 70..80 {
        comments.push((number, h.command(number, "alice", "/oz fix").await));
    }
    for (_, comment) in &comments {
        h.wait_reaction(*comment, "rocket").await;
    }
    h.settle().await;
    assert_eq!(h.sim.run_count(), 10);
    for (number, _) in comments {
        assert_eq!(h.status_comments(number).len(), 1);
    }
}

#[tokio::test]
async fn slack_threads_and_artifact_links_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let extra = [("OZBRIDGE_PUBLIC_URL", "https://oz.example.com")];
    let Some(h) = Harness::start_with(Some(url), &extra).await else {
        return;
    };
    h.sim
        .push_scenario(ozbridge::testkit::oz::Scenario::Artifacts);
    h.slash(common::CHANNEL, "U1", "fix it").await;
    h.wait_for("the root message", || {
        h.slack_roots(common::CHANNEL)
            .first()
            .is_some_and(|m| m.shown().contains("✅ Done"))
    })
    .await;
    let root = h.slack_roots(common::CHANNEL).remove(0);
    // A mention in the thread the slash command made continues its conversation.
    let ask = h
        .mention(
            common::CHANNEL,
            "U1",
            "<@UOZBOT> and the docs",
            Some(&root.ts),
        )
        .await;
    h.wait_for("the follow-up", || {
        h.slack
            .reactions(common::CHANNEL, &ask)
            .contains(&"white_check_mark".to_owned())
    })
    .await;
    assert!(h.sim.create_requests()[1].conversation_id.is_some());
    h.slash(common::CHANNEL, "U1", "status").await;
    h.wait_for("status", || {
        h.slack.responses().iter().any(|r| r.contains("Done"))
    })
    .await;
    let body = root.shown();
    let uid = body
        .split("/artifacts/")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        client
            .get(h.url(&format!("/artifacts/{uid}")))
            .send()
            .await
            .unwrap()
            .status(),
        307
    );
    assert_eq!(
        client
            .get(h.url("/artifacts/file-unknown"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// `url` with one more query setting.
fn with_setting(url: &str, key: &str, value: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.query_pairs_mut().append_pair(key, value);
    url.into()
}

#[tokio::test]
async fn sslmode_require_gives_an_encrypted_session_and_disable_a_plain_one() {
    use ozbridge::store::{Store, Transport};
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let store = Store::connect(&with_setting(&url, "sslmode", "require"))
        .await
        .expect("the local PostgreSQL runs with TLS on");
    let transport = store.transport().await.unwrap();
    assert!(
        matches!(&transport, Transport::Tls { version } if version.starts_with("TLSv")),
        "{transport}"
    );
    store.close().await;
    let probed = Store::probe_transport(&with_setting(&url, "sslmode", "require"))
        .await
        .unwrap();
    assert_eq!(probed, transport);

    let plain = Store::connect(&with_setting(&url, "sslmode", "disable"))
        .await
        .unwrap();
    assert_eq!(plain.transport().await.unwrap(), Transport::Plaintext);
    plain.close().await;
}

#[tokio::test]
async fn verify_full_checks_the_servers_name_against_the_given_root() {
    use ozbridge::store::{Store, Transport};
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    // The server's own (self-signed) certificate is the root to trust.
    let cert_file: String = {
        use sqlx::Connection;
        let mut connection = sqlx::AnyConnection::connect(&url).await.unwrap();
        let (file,): (String,) = sqlx::query_as("SHOW ssl_cert_file")
            .fetch_one(&mut connection)
            .await
            .unwrap();
        file
    };
    let Ok(cert) = std::fs::read_to_string(&cert_file) else {
        eprintln!("skipped: the server's certificate {cert_file} cannot be read here");
        return;
    };
    let root = dir.path().join("root.pem");
    std::fs::write(&root, cert).unwrap();
    let root = root.display().to_string();
    let names = names_in_certificate(&cert_file);
    let Some(name) = names.first() else {
        eprintln!("skipped: no host name could be read from the server's certificate");
        return;
    };
    let mut by_name = url::Url::parse(&url).unwrap();
    by_name.set_host(Some(name)).unwrap();
    let verified = with_setting(
        &with_setting(by_name.as_str(), "sslmode", "verify-full"),
        "sslrootcert",
        &root,
    );
    let transport = Store::probe_transport(&verified).await.unwrap();
    assert!(matches!(transport, Transport::Tls { .. }), "{transport}");

    // The same root, but the address is not a name the certificate holds.
    let mut by_other = url::Url::parse(&url).unwrap();
    by_other.set_host(Some("127.0.0.1")).unwrap();
    by_other.set_password(Some("not-a-real-secret")).unwrap();
    if !names.iter().any(|n| n == "127.0.0.1") {
        let wrong = with_setting(
            &with_setting(by_other.as_str(), "sslmode", "verify-full"),
            "sslrootcert",
            &root,
        );
        let error = Store::probe_transport(&wrong).await.unwrap_err();
        let text = format!("{error:#}");
        assert!(text.to_lowercase().contains("certificate"), "{text}");
        assert!(!text.contains("not-a-real-secret"), "{text}");
    }
}

/// The DNS names and addresses a certificate file holds (read with the `openssl` tool;
/// empty when it is not installed).
fn names_in_certificate(file: &str) -> Vec<String> {
    let Ok(output) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in", file])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .split([',', '\n'])
        .filter_map(|item| {
            let item = item.trim();
            item.strip_prefix("DNS:")
                .or_else(|| item.strip_prefix("IP Address:"))
                .map(str::to_owned)
        })
        .collect()
}

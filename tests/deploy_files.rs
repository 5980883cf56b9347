//! The deploy files as Docker and Fly read them: the image's health check, the volume
//! created with the first machine, the metrics Fly scrapes, and the paths they name
//! being routes the service answers.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fly() -> toml::Table {
    read("fly.toml").parse().expect("fly.toml is TOML")
}

#[test]
fn fly_creates_the_volume_checks_health_and_scrapes_metrics() {
    let fly = fly();
    let mounts = fly["mounts"].as_array().expect("[[mounts]]");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0]["destination"].as_str(), Some("/data"));
    let size = mounts[0]["initial_size"].as_str().expect("initial_size");
    assert!(size.ends_with("gb") || size.ends_with("GB"), "{size}");

    let env = fly["env"].as_table().expect("[env]");
    assert_eq!(
        env["DATABASE_URL"].as_str(),
        Some("sqlite:///data/ozbridge.db"),
        "the database lives on the volume"
    );
    let listen = env["OZBRIDGE_LISTEN"].as_str().expect("OZBRIDGE_LISTEN");
    let port = listen.rsplit(':').next().unwrap().parse::<i64>().unwrap();

    let service = fly["http_service"].as_table().expect("[http_service]");
    assert_eq!(service["internal_port"].as_integer(), Some(port));
    assert_eq!(
        service["auto_stop_machines"].as_str(),
        Some("off"),
        "the tracker needs the machine running"
    );
    let checks = service["checks"].as_array().expect("http checks");
    assert_eq!(checks[0]["path"].as_str(), Some("/healthz"));

    // Metrics on a port of their own, which the public proxy does not forward.
    let metrics_listen = env["OZBRIDGE_METRICS_LISTEN"]
        .as_str()
        .expect("OZBRIDGE_METRICS_LISTEN");
    let metrics_port = metrics_listen
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    assert_ne!(metrics_port, port);
    let metrics = fly["metrics"].as_table().expect("[metrics]");
    assert_eq!(metrics["port"].as_integer(), Some(metrics_port));
    assert_eq!(metrics["path"].as_str(), Some("/metrics"));
}

#[test]
fn the_image_checks_its_health_with_its_own_binary() {
    let dockerfile = read("Dockerfile");
    let healthcheck = dockerfile
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        healthcheck.contains("CMD [\"/usr/local/bin/ozbridge\", \"healthcheck\""),
        "{healthcheck}"
    );
    for option in ["--interval=", "--timeout=", "--start-period="] {
        assert!(healthcheck.contains(option), "{option} in {healthcheck}");
    }
    assert!(
        dockerfile
            .contains("COPY --from=build /src/target/release/ozbridge /usr/local/bin/ozbridge")
    );
    assert!(
        dockerfile.contains("USER ozbridge"),
        "runs as a non-root user"
    );
    assert!(dockerfile.contains("VOLUME [\"/data\"]"));
    assert!(
        dockerfile.contains("ca-certificates"),
        "TLS to GitHub, Slack, Oz and PostgreSQL trusts the system's roots"
    );
}

//! Mixed Node/sio clusters on a TLS-only `redis-server` with an ACL user, as the interop
//! contract allows (`REDIS_URL=rediss://user:password@host:port`, `REDIS_CA=<pem>`): the
//! checker's every scenario, Node's emitter and the Rust one included, over TLS. The
//! certificates are the test's own (its CA is trusted through `REDIS_CA`).
//!
//! Needs `redis-server` built with TLS (Debian's is), `node` and `npm ci` in `js/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Certs, Kind, Redis, TLS_USER, run_checker_env, start_node_env};

fn check(a: Kind, b: Kind, adapter: &str) {
    let certs = Certs::make();
    let redis = Redis::start_tls(&certs);
    let url = redis.tls_url();
    let ca = certs.ca().display().to_string();
    let env = [("REDIS_CA", ca.as_str())];
    let node_a = start_node_env(a, "A", &url, adapter, &env);
    let node_b = start_node_env(b, "B", &url, adapter, &env);
    // Both nodes' connections are the ACL user's, over TLS (the only port there is).
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert!(
        clients
            .lines()
            .filter(|l| l.contains(&format!("user={TLS_USER}")))
            .count()
            >= 4,
        "{clients}"
    );
    let (ok, output) = run_checker_env(node_a.port, node_b.port, &url, adapter, None, &env);
    println!("{adapter} over TLS: {a:?} + {b:?}:\n{output}");
    assert!(ok, "{adapter} over TLS: {a:?} + {b:?} failed:\n{output}");
}

#[test]
fn classic_sio_and_node_over_tls() {
    check(Kind::Sio, Kind::Node, "classic");
}

#[test]
fn classic_node_and_sio_over_tls() {
    check(Kind::Node, Kind::Sio, "classic");
}

#[test]
fn sharded_sio_and_node_over_tls() {
    check(Kind::Sio, Kind::Node, "sharded");
}

#[test]
fn streams_sio_and_node_over_tls() {
    check(Kind::Sio, Kind::Node, "streams");
}

/// A TLS-only Redis Cluster (its bus too) with the ACL user: a sio node and a Node node
/// (node-redis's cluster client) seeded with different nodes, `rediss+cluster://`, classic
/// protocol.
#[test]
fn classic_sio_and_node_on_a_tls_cluster() {
    let certs = Certs::make();
    let nodes: Vec<Redis> = (0..3)
        .map(|_| {
            Redis::start_tls_with(
                &certs,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                ],
            )
        })
        .collect();
    let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
    create.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
    create.push("--cluster-yes".to_owned());
    let args: Vec<&str> = create.iter().map(String::as_str).collect();
    let out = nodes[0].cli(&args);
    assert!(out.contains("[OK]"), "cluster create failed:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the cluster did not settle");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let seeds = |of: &[&Redis]| {
        let hosts: Vec<String> = of.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!(
            "rediss+cluster://{TLS_USER}:p%40ss%3Aw%2Frd@{}",
            hosts.join(",")
        )
    };
    let ca = certs.ca().display().to_string();
    let env = [("REDIS_CA", ca.as_str())];
    let a = start_node_env(Kind::Sio, "A", &seeds(&[&nodes[0]]), "classic", &env);
    let b = start_node_env(
        Kind::Node,
        "B",
        &seeds(&[&nodes[1], &nodes[2]]),
        "classic",
        &env,
    );
    // The emitters publish on one node: classic pub/sub crosses the (TLS) cluster bus.
    let emitters = nodes[2].tls_url();
    let (ok, output) = run_checker_env(a.port, b.port, &emitters, "classic", None, &env);
    println!("classic on a TLS cluster: Sio + Node:\n{output}");
    assert!(ok, "classic on a TLS cluster, Sio + Node:\n{output}");
}

/// `interop-server` with a CA that did not sign the server's certificate, or a wrong password:
/// it exits at once, saying why, and prints no `READY`.
#[test]
fn a_wrong_ca_or_password_stops_the_server_with_the_reason() {
    let certs = Certs::make();
    let other = Certs::make();
    let redis = Redis::start_tls(&certs);
    let run = |url: &str, ca: &Certs| {
        let output = Command::new(env!("CARGO_BIN_EXE_interop-server"))
            .env("PORT", support::free_port().to_string())
            .env("REDIS_URL", url)
            .env("REDIS_CA", ca.ca())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(!String::from_utf8_lossy(&output.stdout).contains("READY"));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let wrong_ca = run(&redis.tls_url(), &other);
    assert!(wrong_ca.contains("UnknownIssuer"), "{wrong_ca}");
    let wrong_password = run(
        &format!("rediss://{TLS_USER}:nope@127.0.0.1:{}", redis.port),
        &certs,
    );
    assert!(wrong_password.contains("WRONGPASS"), "{wrong_password}");
    assert!(!wrong_password.contains("nope"), "{wrong_password}");
}

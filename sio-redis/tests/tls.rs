//! sio-redis on TLS-only `redis-server`s with an ACL user, as managed Redis runs: certificates
//! made by the test (its own CA), a standalone server, a Sentinel and a Redis Cluster. What
//! works (broadcasts between nodes, the recovery session store, mutual TLS, credentials and
//! database as options) and how what does not is reported (a wrong CA, a wrong password, a
//! plain-text URL on a TLS port, no Tokio runtime).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use sio_core::{Backend as _, Namespace, NodeReceiver, RecoverableSession, SocketIo};
use sio_redis::{Emitter, Error, RedisAdapter, RedisConfig, TlsConfig};
use support::{
    Certs, Cluster, PASSWORD, Redis, Sentinel, USER, connect, eventually, poll, sio_node,
};

/// The test CA, trusted besides the system's.
fn trusting(certs: &Certs) -> TlsConfig {
    TlsConfig::new().ca_file(certs.ca())
}

async fn connected(config: RedisConfig) -> RedisAdapter {
    let adapter = tokio::time::timeout(Duration::from_secs(10), RedisAdapter::connect(config))
        .await
        .expect("connect did not return")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), adapter.ready())
        .await
        .unwrap();
    adapter
}

/// What [`RedisAdapter::connect`] refused `config` with.
async fn refusal(config: RedisConfig) -> Error {
    match tokio::time::timeout(Duration::from_secs(10), RedisAdapter::connect(config)).await {
        Ok(Err(err)) => {
            // What a user reads (`--nocapture`).
            println!("refused: {err}");
            err
        }
        Ok(Ok(_)) => panic!("connected"),
        Err(_) => panic!("connect did not return"),
    }
}

/// A broadcast from one sio node reaches a client of the other, through a TLS Redis where
/// only the ACL user may log in; one node has its credentials in the URL, the other as
/// options (the password as it is, no encoding).
#[test]
fn a_broadcast_crosses_nodes_over_tls_as_an_acl_user() {
    let certs = Certs::make();
    let redis = Redis::start_tls(&certs, &[]);
    let in_url = RedisConfig::new(redis.tls_url()).tls(trusting(&certs));
    let as_options = RedisConfig::new(format!("rediss://127.0.0.1:{}", redis.port))
        .username(USER)
        .password(PASSWORD)
        .tls(trusting(&certs));
    let node = |config: RedisConfig| {
        sio_node(move || {
            let adapter = RedisAdapter::new(config).unwrap();
            let io = SocketIo::builder()
                .adapter(adapter.clone())
                .forwarding(false)
                .namespace(Namespace::new("/chat"))
                .build();
            (io, adapter)
        })
    };
    let (a, _io_a, adapter_a) = node(in_url);
    let (_b, io_b, adapter_b) = node(as_options);
    let client = connect(a, "/chat");
    actix_web::rt::System::new().block_on(async {
        for adapter in [&adapter_a, &adapter_b] {
            tokio::time::timeout(Duration::from_secs(10), adapter.ready())
                .await
                .unwrap();
        }
        assert_eq!(adapter_b.server_count().await.unwrap(), 2);
    });
    io_b.of("/chat").unwrap().emit("hello", "over tls").unwrap();
    let mut received = String::new();
    for _ in 0..20 {
        let (status, body) = poll(a, "GET", Some(&client), "");
        assert_eq!(status, 200);
        received.push_str(&body);
        if received.contains("hello") {
            break;
        }
    }
    assert!(
        received.contains(r#"42/chat,["hello","over tls"]"#),
        "{received}"
    );
    assert!(adapter_a.stats().received >= 1);
    assert_eq!(
        redis.cli(&["ACL", "WHOAMI"]).trim(),
        USER,
        "the test's own cli"
    );
}

/// The recovery session store over TLS, in the database [`RedisConfig::database`] names: a
/// released session is taken once, by another node, for its namespace only.
#[tokio::test]
async fn recovery_sessions_live_in_the_tls_redis_database_given() {
    let certs = Certs::make();
    let redis = Redis::start_tls(&certs, &[]);
    let config = || {
        RedisConfig::new(redis.tls_url())
            .tls(trusting(&certs))
            .database(3)
    };
    let (a, b) = (connected(config()).await, connected(config()).await);
    let store_a = a.session_store().unwrap();
    let store_b = b.session_store().unwrap();
    let session = RecoverableSession::new(
        "sid-1".to_owned(),
        "pid-1".to_owned(),
        vec!["room".into()],
        json!({"user": 7}),
    );
    let ttl = Duration::from_secs(60);
    store_a.save("/", &session, ttl);
    store_a.release("/", &session, ttl);
    eventually(
        Duration::from_secs(5),
        "the session was not written",
        || redis.cli(&["-n", "3", "KEYS", "*pid-1*"]).contains("pid-1"),
    )
    .await;
    assert!(
        !redis.cli(&["-n", "0", "KEYS", "*"]).contains("pid-1"),
        "written to database 0"
    );
    assert_eq!(store_b.take("/admin", "pid-1").await.unwrap(), None);
    assert_eq!(store_b.take("/", "pid-1").await.unwrap(), Some(session));
    assert_eq!(store_a.take("/", "pid-1").await.unwrap(), None);
}

/// A server whose certificate no trusted CA signed is refused at the handshake, and the error
/// says so and what to do: with another CA, and with the system's roots alone.
#[tokio::test]
async fn a_wrong_ca_is_refused_with_a_clear_error() {
    let certs = Certs::make();
    let redis = Redis::start_tls(&certs, &[]);
    for tls in [
        TlsConfig::new().ca_file(certs.path("other-ca.pem")),
        TlsConfig::new(),
    ] {
        let err = refusal(RedisConfig::new(redis.tls_url()).tls(tls)).await;
        assert!(matches!(err, Error::TlsHandshake { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("127.0.0.1:{}", redis.port)),
            "{message}"
        );
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(message.contains("TlsConfig::ca_file"), "{message}");
        assert!(!message.contains(PASSWORD), "{message}");
    }
    // A CA file that is not there: named, before any connection.
    let err = refusal(
        RedisConfig::new(redis.tls_url()).tls(TlsConfig::new().ca_file("/nonexistent/ca.pem")),
    )
    .await;
    assert!(
        err.to_string()
            .starts_with("cannot read the CA certificate file /nonexistent/ca.pem"),
        "{err}"
    );
}

/// A wrong password, a wrong user, no password at all: Redis's answer, and the user, in a typed
/// error without the password.
#[tokio::test]
async fn a_wrong_password_is_refused_with_a_clear_error() {
    let certs = Certs::make();
    let redis = Redis::start_tls(&certs, &[]);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let with = |user: &str, password: &str| {
        RedisConfig::new(url.clone())
            .username(user)
            .password(password)
            .tls(trusting(&certs))
    };
    for config in [with(USER, "not-the-password"), with("nobody", PASSWORD)] {
        let err = refusal(config).await;
        let Error::Auth { user, reason, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(reason.contains("WRONGPASS"), "{err}");
        assert!(user == USER || user == "nobody", "{err}");
        assert!(!err.to_string().contains("not-the-password"), "{err}");
    }
    let err = refusal(RedisConfig::new(url).tls(trusting(&certs))).await;
    assert!(
        matches!(&err, Error::Auth { user, .. } if user == "default"),
        "{err:?}"
    );
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    assert!(err.to_string().contains("RedisConfig::password"), "{err}");
}

/// `redis://` on a TLS port, `rediss://` on a plain one: the error points at the scheme.
#[tokio::test]
async fn a_url_that_does_not_match_the_port_says_so() {
    let certs = Certs::make();
    let tls = Redis::start_tls(&certs, &[]);
    let err = refusal(RedisConfig::new(format!(
        "redis://{USER}:x@127.0.0.1:{}",
        tls.port
    )))
    .await;
    assert!(err.to_string().contains("rediss://"), "{err}");
    let plain = Redis::start();
    let err = refusal(
        RedisConfig::new(format!("rediss://127.0.0.1:{}", plain.port)).tls(trusting(&certs)),
    )
    .await;
    assert!(matches!(err, Error::TlsHandshake { .. }), "{err:?}");
    assert!(err.to_string().contains("speak TLS"), "{err}");
}

/// Mutual TLS (`tls-auth-clients yes`): refused without a client certificate, with a hint;
/// accepted with one signed by the server's CA (given as files, and as PEM text).
#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = Certs::make();
    let redis = Redis::start_tls(&certs, &["--tls-auth-clients", "yes"]);
    let err = refusal(RedisConfig::new(redis.tls_url()).tls(trusting(&certs))).await;
    assert!(matches!(err, Error::TlsHandshake { .. }), "{err:?}");
    assert!(
        err.to_string().contains("TlsConfig::client_cert_files"),
        "{err}"
    );
    let files =
        trusting(&certs).client_cert_files(certs.path("client.pem"), certs.path("client-key.pem"));
    let read = |file: &str| std::fs::read(certs.path(file)).unwrap();
    let pem = TlsConfig::new()
        .ca_pem(read("ca.pem"))
        .without_system_roots()
        .client_cert_pem(read("client.pem"), read("client-key.pem"));
    a_reaches_b(
        RedisConfig::new(redis.tls_url()).tls(files),
        RedisConfig::new(redis.tls_url()).tls(pem),
        &[1],
    )
    .await;
    // A key that does not fit its certificate: refused when the configuration is read.
    let mismatched =
        TlsConfig::new().client_cert_files(certs.path("client.pem"), certs.path("server-key.pem"));
    let err = refusal(RedisConfig::new(redis.tls_url()).tls(mismatched)).await;
    assert!(
        matches!(
            err,
            Error::Tls {
                what: "client key",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Collects what node channels receive.
#[derive(Default)]
struct Inbox(Mutex<Vec<(u32, Bytes)>>);

struct Listener(u32, Arc<Inbox>);

impl NodeReceiver for Listener {
    fn receive(&self, message: Bytes) {
        self.1.0.lock().unwrap().push((self.0, message));
    }
}

/// Node A listens on node channels `ids`; node B reaches each of them (pub/sub from one node to
/// another, whichever server, shard or master, carries it).
async fn a_reaches_b(a: RedisConfig, b: RedisConfig, ids: &[u32]) {
    let a = connected(a).await;
    let inbox = Arc::new(Inbox::default());
    let listeners: Vec<Arc<Listener>> = ids
        .iter()
        .map(|id| Arc::new(Listener(*id, inbox.clone())))
        .collect();
    for listener in &listeners {
        let weak: Weak<dyn NodeReceiver> = Arc::downgrade(listener) as _;
        assert!(a.listen_node(listener.0, weak));
    }
    tokio::time::timeout(Duration::from_secs(20), a.ready())
        .await
        .unwrap();
    let b = connected(b).await;
    for id in ids {
        let message = Bytes::from(format!("to {id}"));
        assert!(b.send_to_node(*id, message).await.unwrap(), "node {id}");
    }
    eventually(Duration::from_secs(10), "messages lost", || {
        inbox.0.lock().unwrap().len() == ids.len()
    })
    .await;
    drop(listeners);
}

/// Sentinel over TLS with a password of its own, in front of a TLS master with the ACL user:
/// the nodes find the master and reach each other; a wrong sentinel password is reported as
/// the sentinel's answer.
#[tokio::test]
async fn sentinel_over_tls_with_auth() {
    let certs = Certs::make();
    let master = Redis::start_tls(&certs, &[]);
    let sentinel = Sentinel::start_tls(&certs, master.port);
    assert_eq!(sentinel.master_port(), Some(master.port));
    let config = || {
        RedisConfig::new(sentinel.tls_url())
            .sentinel_password(support::SENTINEL_PASSWORD)
            .tls(trusting(&certs))
    };
    a_reaches_b(config(), config(), &[1, 2, 3]).await;
    let err = refusal(
        RedisConfig::new(sentinel.tls_url())
            .sentinel_password("wrong")
            .tls(trusting(&certs)),
    )
    .await;
    let Error::Sentinel { master, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(master, "mymaster");
    assert!(
        reason.contains("WRONGPASS") || reason.contains("invalid password"),
        "{err}"
    );
    let err = refusal(RedisConfig::new(sentinel.tls_url()).tls(trusting(&certs))).await;
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    assert!(
        err.to_string().contains("RedisConfig::sentinel_password"),
        "{err}"
    );
}

/// After a failover behind a TLS Sentinel with auth (the TLS replica promoted), the nodes
/// move to the new master: the subscriber within a second or so, the publisher's pooled
/// connections at their next checkout.
#[tokio::test]
async fn sentinel_over_tls_failover_is_followed() {
    let certs = Certs::make();
    let master = Redis::start_tls(&certs, &[]);
    let master_port = master.port.to_string();
    let replica = Redis::start_tls(
        &certs,
        &[
            "--replicaof",
            "127.0.0.1",
            &master_port,
            "--tls-replication",
            "yes",
            "--masteruser",
            USER,
            "--masterauth",
            PASSWORD,
        ],
    );
    eventually(Duration::from_secs(10), "the replica did not sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    })
    .await;
    let sentinel = Sentinel::start_tls(&certs, master.port);
    let config = || {
        RedisConfig::new(sentinel.tls_url())
            .sentinel_password(support::SENTINEL_PASSWORD)
            .tls(trusting(&certs))
    };
    let a = connected(config()).await;
    let inbox = Arc::new(Inbox::default());
    let listener = Arc::new(Listener(9, inbox.clone()));
    let weak: Weak<dyn NodeReceiver> = Arc::downgrade(&listener) as _;
    assert!(a.listen_node(9, weak));
    tokio::time::timeout(Duration::from_secs(10), a.ready())
        .await
        .unwrap();
    let b = connected(config()).await;
    assert!(
        b.send_to_node(9, Bytes::from_static(b"before"))
            .await
            .unwrap()
    );

    // Refused (NOGOODSLAVE) until the sentinel has looked at the replica itself.
    eventually(
        Duration::from_secs(20),
        "the sentinel would not fail over",
        || {
            sentinel
                .cli(&["SENTINEL", "FAILOVER", "mymaster"])
                .trim()
                .ends_with("OK")
        },
    )
    .await;
    eventually(Duration::from_secs(20), "no failover", || {
        sentinel.master_port() == Some(replica.port)
    })
    .await;
    let channel = format!("socket.io-forward#{:08x}#", 9);
    eventually(
        Duration::from_secs(10),
        "the subscriber did not move to the new master",
        || {
            replica
                .cli(&["PUBSUB", "NUMSUB", &channel])
                .lines()
                .nth(1)
                .is_some_and(|n| n.trim() == "1")
        },
    )
    .await;
    // The publisher checks at checkout (a second at most) that its connection is still on the
    // master; a message sent to the old one meanwhile reaches nobody and is sent again.
    let mut delivered = false;
    for _ in 0..50 {
        if b.send_to_node(9, Bytes::from_static(b"after"))
            .await
            .unwrap()
        {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "nothing listens through the new master");
    eventually(Duration::from_secs(10), "lost after the failover", || {
        inbox
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(_, m)| m.as_ref() == b"after")
    })
    .await;
    drop(listener);
}

/// A TLS-only Redis Cluster (the bus too) with the ACL user, seeded with one node: node
/// channels reach the other node in both pub/sub protocols (sharded: on the master that owns
/// each channel's slot, connected to over TLS).
#[tokio::test]
async fn cluster_over_tls() {
    let certs = Certs::make();
    let cluster = Cluster::start_tls(&certs);
    let ids: Vec<u32> = (1..=12).collect();
    let classic = || RedisConfig::new(cluster.tls_url()).tls(trusting(&certs));
    a_reaches_b(classic(), classic(), &ids).await;
    let sharded = || classic().sharded();
    a_reaches_b(sharded(), sharded(), &ids).await;
}

/// Outside a Tokio runtime the constructors return an error instead of panicking.
#[test]
fn outside_a_runtime_the_constructors_return_an_error() {
    let config = || RedisConfig::new("redis://127.0.0.1:1");
    assert!(matches!(RedisAdapter::new(config()), Err(Error::NoRuntime)));
    assert!(matches!(Emitter::new(config()), Err(Error::NoRuntime)));
    // `connect` polled by an executor that is not Tokio.
    let connecting = RedisAdapter::connect(config());
    let err = futures_util::FutureExt::now_or_never(connecting)
        .expect("returns at once")
        .unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err:?}");
    assert!(err.to_string().contains("RedisAdapter::connect"), "{err}");
}

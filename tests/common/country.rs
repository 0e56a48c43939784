//! A country on one machine: a national broker with the shipped ACL, a hub,
//! and checkpoints A and B, each with its own broker for declarations.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use super::{Broker, Hub, Post, wait_online};

/// A national broker, a hub, and checkpoints A and B trusting one issuer;
/// the posts and the hub follow the authority's signed policy bundles.
pub struct Country {
    pub national: Broker,
    pub national_dir: tempfile::TempDir,
    pub hub: Hub,
    pub a: Post,
    pub b: Post,
    /// The authority's root key; `root.key.pem` in `national_dir`.
    pub root: ed25519_dalek::SigningKey,
}

impl Country {
    /// Everything running, both posts online.
    pub async fn start() -> Country {
        Country::start_with(None).await
    }

    /// Everything running, the hub storing in PostgreSQL at `pg` when given.
    pub async fn start_with(pg: Option<String>) -> Country {
        let mut c = Country::configured_with("", pg);
        c.hub.start();
        c.a.start();
        c.b.start();
        wait_online(c.a.broker.port).await;
        wait_online(c.b.broker.port).await;
        c
    }

    /// Everything configured, nothing started; `sync_extra` goes into each post's `[sync]`.
    pub fn configured(sync_extra: &str) -> Country {
        Country::configured_with(sync_extra, None)
    }

    /// The same, the hub storing in PostgreSQL at `pg` when given.
    pub fn configured_with(sync_extra: &str, pg: Option<String>) -> Country {
        let national_dir = tempfile::tempdir().unwrap();
        let national = Broker::national(national_dir.path(), &["post-a", "post-b"]);
        let issuer = permitgate::keys::generate();
        let a = Post::with("post-a", issuer.clone());
        let b = Post::with("post-b", issuer);
        let hub = Hub::with_store(
            national.port,
            &[
                ("post-a", a.checkpoint_key()),
                ("post-b", b.checkpoint_key()),
            ],
            pg,
        );
        let root = permitgate::keys::generate();
        permitgate::keys::write_keypair(national_dir.path(), "root", &root).unwrap();
        for dir in [a.dir.path(), b.dir.path(), hub.dir.path()] {
            std::fs::write(
                dir.join("root.pub.pem"),
                permitgate::keys::public_pem(&root.verifying_key()),
            )
            .unwrap();
        }
        hub.configure("policy_root_key = \"root.pub.pem\"");
        for p in [&a, &b] {
            p.add_to_policy(&hub.registry);
            p.enable_sync_with(
                national.port,
                &format!("policy_root_key = \"root.pub.pem\"\n{sync_extra}"),
            );
        }
        Country {
            national,
            national_dir,
            hub,
            a,
            b,
            root,
        }
    }
}

impl Country {
    /// The registry the posts' policies hold (both checkpoints, the hub).
    pub fn registry(&self) -> permitgate::registry::Registry {
        let p = self.a.dir.path().join("policy.toml");
        permitgate::policy::Policy::load(&p).unwrap().registry
    }

    /// A post's signing key, as the daemon uses it.
    pub fn key_of(post: &Post) -> ed25519_dalek::SigningKey {
        permitgate::keys::load_signing_key(&post.dir.path().join("state/checkpoint.key.pem"))
            .unwrap()
    }
}

/// A client of the national broker logged in as `user` (password `pw-USER`),
/// collecting the raw (topic, payload) of what it receives on `subscribe`.
pub async fn national_client(
    port: u16,
    user: &str,
    subscribe: &[&str],
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    raw_client(port, Some(user), subscribe).await
}

/// An MQTT 3.1.1 client that sends and takes packets up to 32 MiB, logged
/// in as `user` (password `pw-USER`) or anonymous, collecting the raw
/// (topic, payload) of what it receives on `subscribe`.
pub async fn raw_client(
    port: u16,
    user: Option<&str>,
    subscribe: &[&str],
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let name = user.unwrap_or("anonymous");
    let mut opts = MqttOptions::new(format!("{name}-{}", super::free_port()), "127.0.0.1", port);
    if let Some(user) = user {
        opts.set_credentials(user, format!("pw-{user}"));
    }
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(32 << 20, 32 << 20);
    let (client, mut el) = AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
        .await
        .expect("connected to the national broker");
    for t in subscribe {
        client.subscribe(*t, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
            .await
            .expect("subscribed");
    }
    (client, rx)
}

/// Publishes `payload` on `topic` as `client` and waits until the broker has it.
pub async fn publish(client: &AsyncClient, topic: &str, retain: bool, payload: Vec<u8>) {
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .unwrap();
}

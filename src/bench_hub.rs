//! `permitgate bench hub`: catch-up after an outage, measured.
//!
//! K posts each hold N consumption records (real leaves of real signed
//! logs) while the hub is down; then a real `permitgate hub` starts, by
//! default with no session at the broker (a fresh install, an expired
//! session: the hard case), and the posts send what waits when they see it
//! come back, as real posts do. It prints records/s until every post's
//! records are acknowledged, the single-core `verify_strict` rate of the
//! same run and their ratio, what was lost or stored twice, and then how
//! fast a post that was away backfills the whole national log (each reply
//! checked as a post checks it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

use crate::bench::{Guard, free_port, start_mosquitto, verify_strict_rate, wait_port};
use crate::clock::{Clock, SystemClock};
use crate::keys;
use crate::merkle::head::{Head, checkpoint_origin};
use crate::merkle::{SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, Goods, KIND_CONSUMPTION};
use crate::sync::protocol::{Ack, BATCH_MAX, Backfill, Feed, HubStatus, Records, SyncTopics};

/// What to run (`permitgate bench hub`).
#[derive(Debug, Clone, clap::Args)]
pub struct HubBenchOptions {
    /// Posts with a backlog.
    #[arg(long, default_value_t = 4)]
    pub posts: usize,
    /// Records each post holds.
    #[arg(long, default_value_t = 5_000)]
    pub records: usize,
    /// The hub's store: a PostgreSQL URI (default: a scratch SQLite file).
    #[arg(long)]
    pub store: Option<String>,
    /// The mosquitto binary.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    pub mosquitto: std::path::PathBuf,
    /// Also write the figures to this JSON file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Consumptions per second one post sends once the backlog is in.
    #[arg(long, default_value_t = 200)]
    pub live_rate: u32,
    /// How many, for the propagation figures (0: skip that phase).
    #[arg(long, default_value_t = 2_000)]
    pub live_records: usize,
    /// Keep the hub's log here (at the level PERMITGATE_LOG names, default warn).
    #[arg(long)]
    pub hub_log: Option<std::path::PathBuf>,
}

/// The figures a run produces.
#[derive(Debug, Serialize)]
pub struct HubBenchReport {
    /// Posts, and records each.
    pub posts: usize,
    /// Records each post held.
    pub records_per_post: usize,
    /// The store kind: `sqlite` or `postgresql`.
    pub store: String,
    /// Records acknowledged per second, from the first sent to the last acknowledged.
    pub records_per_sec: f64,
    /// Single-core `verify_strict` rate, same run.
    pub verify_strict_per_sec: f64,
    /// `records_per_sec` / `verify_strict_per_sec`.
    pub ratio_to_one_core_verify: f64,
    /// Seconds from the hub's start to the first record sent (posts see it come back).
    pub first_send_after_secs: f64,
    /// Records the store does not hold at the end.
    pub lost: usize,
    /// Records the store holds more than once.
    pub duplicated: usize,
    /// Entries per second backfilled by a post that was away, each reply checked.
    pub backfill_entries_per_sec: f64,
    /// The steady rate of the propagation phase, consumptions/s.
    pub live_rate: u32,
    /// From a consumption at one post (its message built and sent) to its
    /// feed entry checked at another, in ms: median, 99th percentile, most.
    pub propagation_p50_ms: f64,
    /// 99th percentile of the same.
    pub propagation_p99_ms: f64,
    /// The slowest.
    pub propagation_max_ms: f64,
}

/// One emulated post: its key, its log, and the records messages of its backlog.
struct PostLoad {
    checkpoint: String,
    key: ed25519_dalek::SigningKey,
    messages: Vec<Vec<u8>>,
    /// Its log's hashes (table `t`), `size` leaves long.
    log: rusqlite::Connection,
    size: u64,
}

/// Record `i` of `checkpoint`, as its leaf.
fn leaf(checkpoint: &str, i: u64, consumed_at: i64) -> Vec<u8> {
    record(checkpoint, i, consumed_at).to_leaf()
}

/// Record `i` (sequence number `i + 1`) of `checkpoint`: a plausible
/// clearance, for the benchmarks' logs and ledgers.
pub(crate) fn record(checkpoint: &str, i: u64, consumed_at: i64) -> ConsumptionRecord {
    ConsumptionRecord {
        kind: KIND_CONSUMPTION.into(),
        checkpoint: checkpoint.into(),
        seq: i + 1,
        license_id: format!("LIC-{checkpoint}-{i:07}"),
        declaration_id: format!("D-{checkpoint}-{i:07}"),
        consumed_at,
        token_sha256: [7; 32],
        declaration_sha256: [9; 32],
        exporter: "91320700MA1X0001".into(),
        consignee: "DE-HRB-10001".into(),
        end_user: "DE-HRB-20002".into(),
        destination: "DE".into(),
        goods: vec![Goods {
            hs_code: "850511".into(),
            elements: vec!["Nd".into(), "Dy".into()],
            net_kg: 480.0,
        }],
    }
}

fn build_post(n: usize, checkpoint: &str, now: i64) -> Result<PostLoad> {
    let key = keys::generate();
    let conn = rusqlite::Connection::open_in_memory()?;
    conn.execute_batch(&SqlLog::create_sql("t"))?;
    let log = SqlLog::new(&conn, "t");
    let leaves: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| leaf(checkpoint, i, now - 600))
        .collect();
    for (i, l) in leaves.iter().enumerate() {
        log.append(i as u64, leaf_hash(l))?;
    }
    let size = n as u64;
    let head = Head {
        origin: checkpoint_origin(checkpoint),
        size,
        root: log.root(size)?,
        time: now,
    }
    .sign(&key);
    let mut messages = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH_MAX) {
        let records = chunk
            .iter()
            .map(|&i| {
                Ok((
                    i as u64,
                    leaves[i].clone(),
                    log.prove_inclusion(i as u64, size)?,
                ))
            })
            .collect::<Result<Vec<_>, crate::merkle::MerkleError>>()?;
        messages.push(
            Records {
                head: head.clone(),
                consistency: None,
                records,
            }
            .encode(),
        );
    }
    Ok(PostLoad {
        checkpoint: checkpoint.into(),
        key,
        messages,
        log: conn,
        size,
    })
}

impl PostLoad {
    /// One more consumption, as a post sends it the moment it commits: the
    /// record, its new signed head, and the proof that head extends the last.
    fn consume(&mut self, now: i64) -> Result<Vec<u8>> {
        let log = SqlLog::new(&self.log, "t");
        let i = self.size;
        let l = leaf(&self.checkpoint, i, now);
        log.append(i, leaf_hash(&l))?;
        let size = i + 1;
        let head = Head {
            origin: checkpoint_origin(&self.checkpoint),
            size,
            root: log.root(size)?,
            time: now,
        }
        .sign(&self.key);
        let consistency = Some(crate::sync::protocol::Consistency {
            from: i,
            root: Some(log.root(i)?),
            proof: log.prove_consistency(i, size)?,
        });
        let proof = log.prove_inclusion(i, size)?;
        self.size = size;
        Ok(Records {
            head,
            consistency,
            records: vec![(i, l, proof)],
        }
        .encode())
    }
}

async fn client(port: u16, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(32 << 20, 32 << 20)
        .set_inflight(1000);
    let (c, mut el) = AsyncClient::new(opts, 100_000);
    // As real posts do: without it each request waits on delayed ACKs.
    el.set_network_options(crate::mqtt::network_options());
    (c, el)
}

/// Polls `el` in a task of its own; what arrives comes out as (topic, payload).
fn received(mut el: rumqttc::EventLoop) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic, p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    rx
}

/// Runs the benchmark and prints its figures.
pub async fn run(opts: HubBenchOptions) -> Result<HubBenchReport> {
    if opts.posts == 0 || opts.records == 0 {
        bail!("--posts and --records must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let now = SystemClock.now();
    eprintln!("measuring verify_strict on one core…");
    let verify = verify_strict_rate(&keys::generate());
    eprintln!(
        "building {} posts × {} records (real leaves, signed heads, proofs)…",
        opts.posts, opts.records
    );
    let mut loads: Vec<PostLoad> = (0..opts.posts)
        .map(|i| build_post(opts.records, &format!("bench-post-{i}"), now))
        .collect::<Result<_>>()?;
    let hub_key = keys::generate();
    keys::write_keypair(dir.path(), "hub", &hub_key)?;
    let mut policy = String::from(
        "version = 1\nissued_at = \"2025-01-01T00:00:00Z\"\nmax_age = \"3650d\"\ncontrolled_elements = [\"Dy\"]\ncontrolled_hs = [\"8505\"]\n",
    );
    for l in &loads {
        policy.push_str(&format!(
            "\n[[checkpoints]]\nid = \"{}\"\npublic_key = \"\"\"\n{}\"\"\"\n",
            l.checkpoint,
            keys::public_pem(&l.key.verifying_key())
        ));
    }
    policy.push_str(&format!(
        "\n[[hubs]]\nid = \"hub-1\"\npublic_key = \"\"\"\n{}\"\"\"\n",
        keys::public_pem(&hub_key.verifying_key())
    ));
    std::fs::write(dir.path().join("policy.toml"), policy)?;
    let registry = crate::policy::Policy::load(&dir.path().join("policy.toml"))?.registry;
    let port = free_port()?;
    let _mosquitto = Guard(start_mosquitto(&opts.mosquitto, dir.path(), port)?);
    wait_port(port)?;
    let store = opts.store.clone().unwrap_or_else(|| "hub.db".into());
    let given = opts
        .store
        .as_deref()
        .filter(|u| crate::hub::store::is_postgres(u) || std::path::Path::new(u).exists());
    if let Some(uri) = given {
        // Design: the posts are new on every run; records left by an earlier
        // run would share their checkpoint names and never check.
        let (records, _) = crate::hub::store::Store::open(uri).await?.counts().await?;
        if records > 0 {
            bail!(
                "the store {} already holds {records} records; give the benchmark an empty database",
                crate::hub::store::redacted(uri)
            );
        }
    }
    std::fs::write(
        dir.path().join("hub.toml"),
        format!(
            "store = \"{store}\"\npolicy = \"policy.toml\"\nhub_key = \"hub.key.pem\"\nhub_kid = \"hub-1\"\n\n[mqtt]\nport = {port}\nclient_id = \"bench-hub-{port}\"\ninflight = 1000\n"
        ),
    )?;

    // The posts wait for the hub to come back, as real ones do.
    let topics = SyncTopics::new("permitgate");
    let (posts, el) = client(port, "bench-posts").await;
    for l in &loads {
        posts
            .subscribe(topics.ack(&l.checkpoint), QoS::AtLeastOnce)
            .await?;
    }
    posts
        .subscribe(topics.hub_status(), QoS::AtLeastOnce)
        .await?;
    let mut rx = received(el);
    let log_path = opts
        .hub_log
        .clone()
        .unwrap_or_else(|| dir.path().join("hub.log"));
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let _hub = Guard(
        Command::new(&exe)
            .args(["hub", "--config"])
            .arg(dir.path().join("hub.toml"))
            .env(
                "PERMITGATE_LOG",
                std::env::var("PERMITGATE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the hub")?,
    );
    let mut contiguous = vec![0u64; loads.len()];
    let mut first_send: Option<Instant> = None;
    let mut last_report = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    let total = (opts.posts * opts.records) as u64;
    while contiguous.iter().sum::<u64>() < total {
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!(
                "  {:>6.1} s  {} of {total} acknowledged",
                started.elapsed().as_secs_f64(),
                contiguous.iter().sum::<u64>()
            );
        }
        let next = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        if next.is_err() && Instant::now() < deadline {
            continue;
        }
        let Ok(Some((topic, payload))) = next else {
            bail!(
                "the hub acknowledged {} of {total} records within 600 s; its log:\n{}",
                contiguous.iter().sum::<u64>(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        };
        if topic == topics.hub_status() {
            let online = HubStatus::open(&payload, &registry, SystemClock.now())
                .is_ok_and(|s| s.state == "online");
            if online && first_send.is_none() {
                first_send = Some(Instant::now());
                for l in &loads {
                    for m in &l.messages {
                        posts
                            .publish(
                                topics.records(&l.checkpoint),
                                QoS::AtLeastOnce,
                                false,
                                m.clone(),
                            )
                            .await?;
                    }
                }
            }
        } else if let Some(i) = loads
            .iter()
            .position(|l| topic == topics.ack(&l.checkpoint))
            && let Ok(a) = Ack::open(&payload, &registry, SystemClock.now())
        {
            contiguous[i] = contiguous[i].max(a.contiguous);
        }
    }
    let Some(first) = first_send else {
        bail!("the hub never said it was online");
    };
    let ingest_secs = first.elapsed().as_secs_f64();
    let records_per_sec = total as f64 / ingest_secs;

    // What the store holds: every record once?
    let mut reader = crate::hub::store::Store::open(&if crate::hub::store::is_postgres(&store) {
        store.clone()
    } else {
        dir.path().join(&store).to_string_lossy().into_owned()
    })
    .await?;
    let (held, _) = reader.counts().await?;
    let head = reader.head().await?;
    let lost = total.saturating_sub(held) as usize;
    let duplicated = head.saturating_sub(total) as usize;

    // A post that was away backfills everything, checking each reply.
    let asker = &loads[0];
    let (back, bel) = client(port, "bench-backfill").await;
    back.subscribe(topics.backfill_reply(&asker.checkpoint), QoS::AtLeastOnce)
        .await?;
    let mut brx = received(bel);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let mut after = 0u64;
    while after < total {
        let req = Backfill {
            checkpoint: asker.checkpoint.clone(),
            after,
            limit: BATCH_MAX as u32,
            issued_at: SystemClock.now(),
            nonce: after,
        };
        back.publish(
            topics.backfill(),
            QoS::AtLeastOnce,
            false,
            req.seal(&asker.key),
        )
        .await?;
        let (_, reply) = tokio::time::timeout(Duration::from_secs(30), brx.recv())
            .await
            .ok()
            .flatten()
            .context("no backfill reply within 30 s")?;
        let feed = Feed::decode(&reply)?;
        let checked = crate::sync::verify::check_feed(&feed, &registry)?;
        if !checked.refused.is_empty() {
            bail!("a backfill reply did not check: {:?}", checked.refused[0]);
        }
        let Some(last) = checked.entries.last().map(|e| e.g) else {
            bail!("the backfill stopped at {after} of {total}");
        };
        after = last;
    }
    let backfill = total as f64 / t.elapsed().as_secs_f64();
    let latencies = if opts.live_records > 0 {
        eprintln!(
            "one post consuming {}/s, another following the feed…",
            opts.live_rate
        );
        propagation(
            &mut loads[0],
            &posts,
            port,
            &registry,
            opts.live_rate.max(1),
            opts.live_records,
        )
        .await?
    } else {
        Vec::new()
    };
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let first_send_after = first.duration_since(started).as_secs_f64();
    let report = HubBenchReport {
        posts: opts.posts,
        records_per_post: opts.records,
        store: if crate::hub::store::is_postgres(&store) {
            "postgresql"
        } else {
            "sqlite"
        }
        .into(),
        records_per_sec,
        verify_strict_per_sec: verify,
        ratio_to_one_core_verify: records_per_sec / verify,
        first_send_after_secs: first_send_after,
        lost,
        duplicated,
        backfill_entries_per_sec: backfill,
        live_rate: opts.live_rate,
        propagation_p50_ms: pct(0.5),
        propagation_p99_ms: pct(0.99),
        propagation_max_ms: latencies.last().copied().unwrap_or(0.0),
    };
    print_report(&report);
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(reader);
    Ok(report)
}

/// One post consumes at `rate` per second, sending each record the moment
/// it is consumed; another post follows the feed and checks each message
/// as a post does. Returns the latencies in ms, sorted.
async fn propagation(
    post: &mut PostLoad,
    publisher: &AsyncClient,
    port: u16,
    registry: &crate::registry::Registry,
    rate: u32,
    n: usize,
) -> Result<Vec<f64>> {
    let topics = SyncTopics::new("permitgate");
    let (other, el) = client(port, "bench-other-post").await;
    other.subscribe(topics.feed(), QoS::AtLeastOnce).await?;
    let mut rx = received(el);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = post.size;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let deadline = start + interval * n as u32 + Duration::from_secs(30);
    let mut sent: Vec<Option<Instant>> = vec![None; n];
    let mut latencies = Vec::with_capacity(n);
    let mut k = 0usize;
    while latencies.len() < n {
        let due = start + interval * k as u32;
        tokio::select! {
            _ = tokio::time::sleep_until(due), if k < n => {
                let at = Instant::now();
                let message = post.consume(SystemClock.now())?;
                sent[k] = Some(at);
                publisher
                    .publish(topics.records(&post.checkpoint), QoS::AtLeastOnce, false, message)
                    .await?;
                k += 1;
            }
            m = rx.recv() => {
                let Some((_, payload)) = m else { bail!("the feed subscription ended") };
                let checked = crate::sync::verify::check_feed(&Feed::decode(&payload)?, registry)?;
                let now = Instant::now();
                for e in checked.entries {
                    let i = e.record.seq.saturating_sub(1).checked_sub(base);
                    if e.record.checkpoint == post.checkpoint
                        && let Some(Some(at)) = i.and_then(|i| sent.get(i as usize))
                    {
                        latencies.push((now - *at).as_secs_f64() * 1e3);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                bail!("{} of {n} consumptions reached the other post in time", latencies.len());
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn print_report(r: &HubBenchReport) {
    println!(
        "posts × records          {} × {}",
        r.posts, r.records_per_post
    );
    println!("store                    {}", r.store);
    println!("hub back → first resend  {:.2} s", r.first_send_after_secs);
    println!(
        "ingest                   {:.0} records/s",
        r.records_per_sec
    );
    println!("verify_strict, 1 core    {:.0}/s", r.verify_strict_per_sec);
    println!(
        "ratio                    {:.2}× one core's verify_strict",
        r.ratio_to_one_core_verify
    );
    println!("lost / duplicated        {} / {}", r.lost, r.duplicated);
    println!(
        "backfill                 {:.0} entries/s (each reply checked)",
        r.backfill_entries_per_sec
    );
    if r.propagation_max_ms > 0.0 {
        println!(
            "post → other post        p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms at {}/s",
            r.propagation_p50_ms, r.propagation_p99_ms, r.propagation_max_ms, r.live_rate
        );
    }
}

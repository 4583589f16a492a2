//! The crash test: a real `switchboard serve` child process under a load of private
//! messages to online and offline users is killed with SIGKILL mid-load and restarted on
//! the same database. Every message answered `SEND_RESPONSE` code 0 before the kill must
//! then reach its recipient exactly once per session (resume with lastSeq/epoch, then
//! pull until `hasMore` is false), in each sender's order. Run with `store.fsync =
//! always` and with `normal` (which may lose commits on power failure, never on a crash
//! of the process).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::chat::{connect_with, next, send};
use common::{spawn_binary, Client};
use serde_json::{json, Value};

const SENDERS: usize = 4;
const ONLINE: usize = 4;
const OFFLINE: usize = 4;

/// What one recipient received: (seq, sender, index) in arrival order.
type Got = Vec<(u64, String, u64)>;

/// The node under test; killed when dropped, so a failing test leaves no process behind.
struct Node(std::process::Child);

impl Node {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(db: &str, fsync: &str) -> (Node, SocketAddr) {
    let (child, addr) = spawn_binary(&[
        "serve",
        "--set",
        &format!("store.fsync={fsync}"),
        "--listen",
        "127.0.0.1:0",
        "--set",
        &format!("store.path={db}"),
        "--set",
        "notify_join=false",
        "--set",
        "delivery.mode=pull",
        "--set",
        "delivery.replay_limit=50",
        "--set",
        "engine.workers=2",
    ]);
    (Node(child), addr)
}

fn recipient(i: usize) -> String {
    if i < ONLINE {
        format!("on{i}")
    } else {
        format!("off{i}")
    }
}

/// Keeps a recipient's deliveries until the connection dies.
fn read_deliveries(mut ws: Client, got: Arc<Mutex<Got>>) {
    while let Ok(m) = ws.read() {
        if let tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "SEND_TO_USER_REQUEST" {
                got.lock().unwrap().push(delivery(&v));
            }
        }
    }
}

fn delivery(v: &Value) -> (u64, String, u64) {
    let b = &v["body"];
    (
        b["seq"].as_u64().unwrap(),
        b["content"]["s"].as_str().unwrap().to_owned(),
        b["content"]["i"].as_u64().unwrap(),
    )
}

/// Sends to recipients in turn until the node dies; returns the (recipient, index)
/// pairs answered code 0.
fn sender(addr: SocketAddr, me: String, stop: Arc<AtomicBool>) -> Vec<(String, u64)> {
    let mut ws = connect_with(addr, &format!("?accessToken={me}"), &[]);
    let mut ok = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let to = recipient(i as usize % (ONLINE + OFFLINE));
        let body =
            json!({"toUser": to, "msgId": format!("{me}-{i}"), "content": {"s": me, "i": i}});
        let m = json!({"type": "SEND_TO_ONE_REQUEST", "body": body, "requestId": i.to_string()});
        if ws.send(tungstenite::Message::Text(m.to_string())).is_err() {
            break;
        }
        let answered = loop {
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "SEND_RESPONSE" {
                        break Some(v);
                    }
                }
                Ok(_) => {}
                Err(_) => break None,
            }
        };
        match answered {
            Some(v) if v["body"]["code"] == 0 => ok.push((to, i)),
            Some(v) => panic!("not stored: {v}"),
            None => break,
        }
        i += 1;
    }
    ok
}

/// After the restart: resume from what the recipient has, then pull until nothing more.
fn catch_up(addr: SocketAddr, user: &str, got: &mut Got, epoch: &str) {
    let last = got.iter().map(|g| g.0).max();
    let query = match last {
        Some(n) => format!("?accessToken={user}&lastSeq={n}&epoch={epoch}"),
        None => format!("?accessToken={user}"),
    };
    let mut ws = connect_with(addr, &query, &[]);
    let auth = loop {
        let m = next(&mut ws);
        if m["type"] == "AUTH_RESPONSE" {
            break m;
        }
    };
    assert_eq!(
        auth["body"]["epoch"], epoch,
        "a restart keeps the history: {auth}"
    );
    assert_eq!(auth["body"]["recovered"], true, "{auth}");
    let last_seq = auth["body"]["lastSeq"].as_u64().unwrap();
    let mut has_more = auth["body"]["hasMore"].as_bool().unwrap();
    // The replay: everything up to the last replayed number arrives before anything else.
    let replayed = if has_more {
        50
    } else {
        last_seq - last.unwrap_or(0)
    };
    for _ in 0..replayed {
        let m = next(&mut ws);
        assert_eq!(m["type"], "SEND_TO_USER_REQUEST", "{m}");
        got.push(delivery(&m));
    }
    while has_more {
        let since = got.iter().map(|g| g.0).max().unwrap_or(0);
        send(
            &mut ws,
            "PULL_REQUEST",
            json!({"sinceSeq": since, "limit": 40}),
            "pull",
        );
        let p = loop {
            let m = next(&mut ws);
            if m["type"] == "PULL_RESPONSE" {
                break m;
            }
        };
        for m in p["body"]["messages"].as_array().unwrap() {
            got.push(delivery(m));
        }
        has_more = p["body"]["hasMore"].as_bool().unwrap();
    }
}

fn crash_and_recover(fsync: &str) {
    let dir =
        std::env::temp_dir().join(format!("switchboard-crash-{}-{fsync}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("store.db").display().to_string();
    let (mut child, addr) = serve(&db, fsync);
    // The online recipients, and their epoch.
    let mut epoch = String::new();
    let mut readers = Vec::new();
    let mut gots: HashMap<String, Arc<Mutex<Got>>> = HashMap::new();
    for i in 0..ONLINE {
        let user = recipient(i);
        let mut ws = connect_with(addr, &format!("?accessToken={user}"), &[]);
        let auth = next(&mut ws);
        epoch = auth["body"]["epoch"].as_str().unwrap().to_owned();
        let got = Arc::new(Mutex::new(Vec::new()));
        gots.insert(user, got.clone());
        readers.push(std::thread::spawn(move || read_deliveries(ws, got)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let stop = stop.clone();
            std::thread::spawn(move || (format!("s{s}"), sender(addr, format!("s{s}"), stop)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill(); // SIGKILL, mid-load
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, Vec<(String, u64)>)> =
        senders.into_iter().map(|t| t.join().unwrap()).collect();
    for r in readers {
        r.join().unwrap();
    }
    let total: usize = acked.iter().map(|(_, a)| a.len()).sum();
    assert!(
        total > 200,
        "the load was too light to mean anything: {total}"
    );

    let (mut child, addr) = serve(&db, fsync);
    let started = Instant::now();
    let mut received: HashMap<String, Got> = HashMap::new();
    for i in 0..ONLINE + OFFLINE {
        let user = recipient(i);
        let mut got = gots
            .get(&user)
            .map(|g| g.lock().unwrap().clone())
            .unwrap_or_default();
        catch_up(addr, &user, &mut got, &epoch);
        received.insert(user, got);
    }
    child.kill();

    // Exactly once per session: no number twice, no gap.
    for (user, got) in &received {
        let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
        let unique: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), seqs.len(), "{user} got a number twice");
        let n = seqs.len() as u64;
        assert_eq!(unique, (1..=n).collect(), "{user} has a gap");
    }
    // Every acknowledged message, once, and each sender's in its order.
    for (sender, oks) in &acked {
        for (to, i) in oks {
            let hits = received[to]
                .iter()
                .filter(|g| &g.1 == sender && g.2 == *i)
                .count();
            assert_eq!(
                hits, 1,
                "{sender}'s message {i} to {to} arrived {hits} times ({fsync})"
            );
        }
    }
    for (user, got) in &received {
        let mut by_seq = got.clone();
        by_seq.sort();
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (_, s, i) in &by_seq {
            if let Some(prev) = last.insert(s, *i) {
                assert!(prev < *i, "{user}: {s}'s messages out of order");
            }
        }
    }
    eprintln!(
        "fsync={fsync}: {total} acknowledged before SIGKILL, all recovered in {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_acknowledged_is_lost_when_the_node_is_killed() {
    crash_and_recover("always");
    crash_and_recover("normal");
}

//! What a bench run measured: counters merged across threads, latency histograms, the
//! live progress line, the final table and the JSON object.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Counters the threads bump while running, read by the progress line.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) events: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) done: AtomicBool,
}

/// One thread's results; merged into the run's.
pub(crate) struct Stats {
    /// Messages (or handshakes) completed inside the measured window.
    pub(crate) completed: u64,
    /// Payload bytes received inside the measured window.
    pub(crate) bytes: u64,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) corrupted: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) lost: u64,
    /// Distinct messages received (duplicates not counted), for loss accounting.
    pub(crate) unique: u64,
    pub(crate) conn_errors: u64,
    pub(crate) closed_by_server: u64,
    pub(crate) latency_ns: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            completed: 0,
            bytes: 0,
            sent: 0,
            received: 0,
            corrupted: 0,
            duplicates: 0,
            reordered: 0,
            lost: 0,
            unique: 0,
            conn_errors: 0,
            closed_by_server: 0,
            // 1 ns to 100 s at 3 significant digits.
            latency_ns: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }
}

impl Stats {
    pub(crate) fn record_latency(&mut self, ns: u64) {
        let _ = self.latency_ns.record(ns.max(1));
    }

    pub(crate) fn merge(&mut self, o: &Stats) {
        self.completed += o.completed;
        self.bytes += o.bytes;
        self.sent += o.sent;
        self.received += o.received;
        self.corrupted += o.corrupted;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.lost += o.lost;
        self.unique += o.unique;
        self.conn_errors += o.conn_errors;
        self.closed_by_server += o.closed_by_server;
        let _ = self.latency_ns.add(&o.latency_ns);
    }

    /// Messages lost, corrupted, duplicated or reordered.
    pub(crate) fn integrity_errors(&self) -> u64 {
        self.corrupted + self.duplicates + self.reordered + self.lost
    }
}

/// Client CPU time (user + system) so far, from /proc/self/stat.
pub(crate) fn cpu_time() -> Duration {
    process_cpu("/proc/self/stat").unwrap_or(Duration::ZERO)
}

/// CPU time (user + system, all threads) of the process whose `stat` file is `path`.
fn process_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// The server's CPU over the part of the run that counted events (the measured window,
/// to within one sample).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerCpu {
    pub(crate) cpu: Duration,
    pub(crate) wall: Duration,
    pub(crate) events: u64,
}

impl ServerCpu {
    /// Share of one core the server used, 0..=1 per core.
    pub(crate) fn busy(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Samples of (time, events counted so far, server CPU so far).
#[derive(Default)]
struct CpuSamples {
    path: String,
    samples: Vec<(Instant, u64, Duration)>,
}

impl CpuSamples {
    fn take(&mut self, events: u64) {
        if let Some(cpu) = process_cpu(&self.path) {
            self.samples.push((Instant::now(), events, cpu));
        }
    }

    /// From the last sample before events started to the first with the final count.
    fn window(&self) -> Option<ServerCpu> {
        let last = self.samples.last()?.1;
        let first = self.samples.iter().position(|s| s.1 > 0)?;
        let start = self.samples[first.saturating_sub(1)];
        let end = *self.samples.iter().find(|s| s.1 == last)?;
        (end.0 > start.0).then(|| ServerCpu {
            cpu: end.2.saturating_sub(start.2),
            wall: end.0 - start.0,
            events: end.1 - start.1,
        })
    }
}

/// Prints one progress line a second to stderr until `done`.
pub(crate) fn spawn_progress(
    p: Arc<Progress>,
    label: &'static str,
    server_pid: Option<u32>,
) -> std::thread::JoinHandle<Option<ServerCpu>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last_events = 0;
        let mut last_cpu = cpu_time();
        let mut last = Instant::now();
        let mut server = server_pid.map(|pid| CpuSamples {
            path: format!("/proc/{pid}/stat"),
            samples: Vec::new(),
        });
        // Short sleeps so the server's CPU is read close to the window's edges.
        while !p.done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(s) = server.as_mut() {
                s.take(p.events.load(Ordering::Relaxed));
            }
            if last.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let dt = last.elapsed().as_secs_f64();
            let events = p.events.load(Ordering::Relaxed);
            let cpu = cpu_time();
            let cpu_pct = (cpu.saturating_sub(last_cpu)).as_secs_f64() / dt * 100.0;
            eprintln!(
                "[{:>4.0}s] {:>12.0} {label}/s  open {:>6}  errors {:>4}  client CPU {:>4.0}%",
                start.elapsed().as_secs_f64(),
                (events - last_events) as f64 / dt,
                p.open.load(Ordering::Relaxed),
                p.errors.load(Ordering::Relaxed),
                cpu_pct
            );
            last_events = events;
            last_cpu = cpu;
            last = Instant::now();
        }
        server.and_then(|s| s.window())
    })
}

/// The end of a run: what to print.
pub(crate) struct Report {
    pub(crate) mode: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) measured: Duration,
    pub(crate) stats: Stats,
    pub(crate) client_cpu: Duration,
    /// Wall time of the whole run (connecting, warm-up, measuring, draining).
    pub(crate) elapsed: Duration,
    pub(crate) extra: Vec<(&'static str, serde_json::Value)>,
    /// The server's CPU while measuring, when its pid was given.
    pub(crate) server: Option<ServerCpu>,
}

impl Report {
    /// A report for a run that started at `run_start`; the client CPU is read now.
    pub(crate) fn new(
        mode: &'static str,
        unit: &'static str,
        measured: Duration,
        stats: Stats,
        run_start: Instant,
        extra: Vec<(&'static str, serde_json::Value)>,
    ) -> Self {
        Report {
            mode,
            unit,
            measured,
            stats,
            client_cpu: cpu_time(),
            elapsed: run_start.elapsed(),
            extra,
            server: None,
        }
    }

    /// Adds the server's CPU over the measured window.
    pub(crate) fn with_server(mut self, server: Option<ServerCpu>) -> Self {
        self.server = server;
        self
    }

    /// The rate divided by the server's CPU share: what one fully busy core would do.
    fn per_busy_core(&self) -> Option<f64> {
        let busy = self.server?.busy();
        (busy > 0.0).then(|| self.rate() / busy)
    }

    /// Whether the run was clean: nothing lost, corrupted, duplicated or reordered, and
    /// no connection failed.
    pub(crate) fn clean(&self) -> bool {
        self.stats.integrity_errors() == 0 && self.stats.conn_errors == 0
    }

    pub(crate) fn rate(&self) -> f64 {
        self.stats.completed as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    fn percentile_us(&self, q: f64) -> f64 {
        if self.stats.latency_ns.is_empty() {
            return 0.0;
        }
        self.stats.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        let s = &self.stats;
        let mut v = serde_json::json!({
            "mode": self.mode,
            "measured_s": self.measured.as_secs_f64(),
            "rate_per_s": self.rate(),
            "unit": self.unit,
            "mb_per_s": s.bytes as f64 / self.measured.as_secs_f64().max(1e-9) / 1e6,
            "completed": s.completed,
            "sent": s.sent,
            "received": s.received,
            "corrupted": s.corrupted,
            "duplicates": s.duplicates,
            "reordered": s.reordered,
            "lost": s.lost,
            "connection_errors": s.conn_errors,
            "closed_by_server": s.closed_by_server,
            "latency_us": {
                "p50": self.percentile_us(0.50),
                "p90": self.percentile_us(0.90),
                "p99": self.percentile_us(0.99),
                "p999": self.percentile_us(0.999),
                "max": s.latency_ns.max() as f64 / 1000.0,
                "samples": s.latency_ns.len(),
            },
            "client_cpu_s": self.client_cpu.as_secs_f64(),
            "elapsed_s": self.elapsed.as_secs_f64(),
        });
        if let (Some(obj), Some(sv)) = (v.as_object_mut(), self.server) {
            obj.insert("server_cpu_s".into(), sv.cpu.as_secs_f64().into());
            obj.insert("server_busy".into(), sv.busy().into());
            obj.insert("per_busy_core".into(), self.per_busy_core().into());
            let per_event = sv.cpu.as_secs_f64() * 1e6 / sv.events.max(1) as f64;
            obj.insert("server_cpu_us_per_event".into(), per_event.into());
        }
        if let Some(obj) = v.as_object_mut() {
            for (k, val) in &self.extra {
                obj.insert((*k).to_owned(), val.clone());
            }
        }
        v
    }

    pub(crate) fn print_table(&self) {
        let s = &self.stats;
        println!("mode            {}", self.mode);
        println!("measured        {:.2} s", self.measured.as_secs_f64());
        println!("rate            {:.0} {}/s", self.rate(), self.unit);
        if s.bytes > 0 {
            println!(
                "throughput      {:.1} MB/s (payload received)",
                s.bytes as f64 / self.measured.as_secs_f64().max(1e-9) / 1e6
            );
        }
        if !s.latency_ns.is_empty() {
            println!(
                "latency (µs)    p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  ({} samples)",
                self.percentile_us(0.5),
                self.percentile_us(0.9),
                self.percentile_us(0.99),
                self.percentile_us(0.999),
                s.latency_ns.max() as f64 / 1000.0,
                s.latency_ns.len()
            );
        }
        println!("sent/received   {} / {}", s.sent, s.received);
        println!(
            "integrity       corrupted {}  duplicates {}  reordered {}  lost {}",
            s.corrupted, s.duplicates, s.reordered, s.lost
        );
        println!(
            "connections     errors {}  closed by server {}",
            s.conn_errors, s.closed_by_server
        );
        for (k, v) in &self.extra {
            println!("{k:<15} {v}");
        }
        if let (Some(sv), Some(per_core)) = (self.server, self.per_busy_core()) {
            println!(
                "server CPU      {:.0}% of one core while measuring; {:.0} {}/s per busy core; {:.2} µs per {}",
                sv.busy() * 100.0,
                per_core,
                self.unit,
                sv.cpu.as_secs_f64() * 1e6 / sv.events.max(1) as f64,
                singular(self.unit),
            );
        }
        println!(
            "client CPU      {:.2} s over {:.2} s ({:.0}% of one core)",
            self.client_cpu.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9) * 100.0
        );
    }
}

/// "deliveries" → "delivery", "messages" → "message".
fn singular(unit: &str) -> String {
    match unit.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => unit.trim_end_matches('s').to_owned(),
    }
}

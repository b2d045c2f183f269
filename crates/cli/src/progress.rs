/*!
A progress bar on standard error, drawn only when it is a terminal.

A background thread redraws five times a second from atomic counters, so
the job's hot loop only adds to a counter.
*/

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use distillguard_core::progress::Progress;

#[derive(Default)]
struct State {
    stage: Mutex<(String, Option<u64>, Option<Instant>)>,
    done: AtomicU64,
    stop: AtomicBool,
}

/// Draws a bar while alive; silent when stderr is not a terminal.
pub struct Bar {
    state: Arc<State>,
    painter: Option<JoinHandle<()>>,
}

impl Bar {
    pub fn new(enabled: bool) -> Bar {
        let state = Arc::new(State::default());
        let painter = (enabled && std::io::stderr().is_terminal()).then(|| {
            let s = Arc::clone(&state);
            std::thread::spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    paint(&s);
                }
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            })
        });
        Bar { state, painter }
    }
}

fn paint(s: &State) {
    let Ok(stage) = s.stage.lock() else { return };
    let (name, total, started) = (&stage.0, stage.1, stage.2);
    if name.is_empty() {
        return;
    }
    let done = s.done.load(Ordering::Relaxed);
    let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64()).max(1e-3);
    let rate = done as f64 / secs;
    let line = match total {
        Some(t) if t > 0 => {
            let frac = (done as f64 / t as f64).min(1.0);
            let filled = (frac * 30.0) as usize;
            let eta = if rate > 0.0 {
                (t.saturating_sub(done)) as f64 / rate
            } else {
                0.0
            };
            format!(
                "{name} [{}{}] {:>5.1}% {done}/{t} {:.0}/s ETA {:.0}s",
                "#".repeat(filled),
                "-".repeat(30 - filled),
                frac * 100.0,
                rate,
                eta
            )
        }
        _ => format!("{name} … {done} ({:.0}/s, {:.0}s)", rate, secs),
    };
    let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
}

impl Progress for Bar {
    fn stage(&self, name: &str, total: Option<u64>) {
        if let Ok(mut st) = self.state.stage.lock() {
            *st = (name.to_string(), total, Some(Instant::now()));
        }
        self.state.done.store(0, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        self.state.done.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.painter.take() {
            let _ = p.join();
        }
    }
}

//! A background thread that runs one step of a service, sleeps as long as the step asks (or until
//! woken), and stops on request. The delay-level and timer services do blocking store and file
//! I/O, so they get threads of their own rather than tokio tasks.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::manager::lock;

#[derive(Default)]
struct Signal {
    stop: bool,
    woken: bool,
}

pub(crate) struct Worker {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Runs `step` until stopped; each call returns how long to sleep before the next one.
    pub fn spawn(
        name: &str,
        mut step: impl FnMut() -> Duration + Send + 'static,
    ) -> std::io::Result<Worker> {
        let signal: Arc<(Mutex<Signal>, Condvar)> = Arc::default();
        let s = Arc::clone(&signal);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                if lock(&s.0).stop {
                    return;
                }
                let wait = step();
                let (m, c) = &*s;
                let g = lock(m);
                let (mut g, _) = c
                    .wait_timeout_while(g, wait, |g| !g.stop && !g.woken)
                    .unwrap_or_else(|p| p.into_inner());
                g.woken = false;
                if g.stop {
                    return;
                }
            })?;
        Ok(Worker {
            signal,
            handle: Some(handle),
        })
    }

    /// Runs the next step now.
    pub fn wake(&self) {
        lock(&self.signal.0).woken = true;
        self.signal.1.notify_all();
    }

    /// Stops the thread after its current step and waits for it.
    pub fn stop(&mut self) {
        lock(&self.signal.0).stop = true;
        self.signal.1.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

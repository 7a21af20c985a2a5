//! Name resolution off the loop (SPEC §3): target host names are looked up
//! afresh for every connection by a few helper threads, which send the
//! answer back over a channel and wake the loop. IP literals never come
//! here; the loop connects to them at once.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

/// Threads doing lookups at once: a slow lookup holds up at most one of them.
const WORKERS: usize = 4;

/// A lookup to do, for the pair at `key` with this `serial`.
pub struct Request {
    pub key: usize,
    pub serial: u64,
    pub host: String,
    pub port: u16,
}

/// A finished lookup: the addresses in the system's order.
pub struct Resolved {
    pub key: usize,
    pub serial: u64,
    pub addrs: io::Result<Vec<SocketAddr>>,
}

pub struct Resolver {
    requests: Option<Sender<Request>>,
    wake: Arc<dyn Fn() + Send + Sync>,
    answers_tx: Sender<Resolved>,
    pub answers: Receiver<Resolved>,
}

impl Resolver {
    /// No threads start until the first lookup.
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        let (answers_tx, answers) = mpsc::channel();
        Resolver {
            requests: None,
            wake,
            answers_tx,
            answers,
        }
    }

    /// Queues a lookup; its answer arrives on `answers` and wakes the loop.
    pub fn lookup(&mut self, request: Request) -> io::Result<()> {
        if self.requests.is_none() {
            self.requests = Some(self.start_workers()?);
        }
        let requests = self.requests.as_ref().expect("started above");
        requests
            .send(request)
            .map_err(|_| io::Error::other("resolver threads are gone"))
    }

    fn start_workers(&self) -> io::Result<Sender<Request>> {
        let (tx, rx) = mpsc::channel::<Request>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            let answers = self.answers_tx.clone();
            let wake = Arc::clone(&self.wake);
            thread::Builder::new()
                .name(format!("rawprox-resolve-{i}"))
                .spawn(move || {
                    loop {
                        // Hold the lock only to take the next request.
                        let next = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(req) = next else { return };
                        let addrs = (req.host.as_str(), req.port)
                            .to_socket_addrs()
                            .map(Iterator::collect);
                        if answers
                            .send(Resolved {
                                key: req.key,
                                serial: req.serial,
                                addrs,
                            })
                            .is_err()
                        {
                            return;
                        }
                        wake();
                    }
                })?;
        }
        Ok(tx)
    }
}

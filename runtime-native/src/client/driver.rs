//! The owner task: one per client, owning its core state machine.
//!
//! ```text
//!  Producer / consumer handles ──Control::Call──▶ ┐
//!  connection readers ─────────RawEvent─────────▶ ├─ owner task: feed all with one now_ms,
//!  timer (poll_timeout) ─────────────────────────▶ ┘   fire the timeout, flush outputs once
//! ```
//!
//! Each wake-up takes *every* queued input without waiting, feeds them with one `now_ms`, fires
//! the state machine's timeout if due, then drains its outputs once: requests go to the
//! [`Pool`], completions go back to the callers. Shutdown lets the state machine say goodbye
//! (unregister) and waits a bounded time for the answers before closing the connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error};

use super::clock::Clock;
use super::net::{NetEvent, Pool};

/// How long a client waits at shutdown for the answers to its goodbyes.
pub(crate) const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// A state machine as the owner task drives it. Implemented by the producer's and consumers'
/// adapters around the core's client state machines.
pub(crate) trait Driven: Send + 'static {
    /// What the public handle asks of the owner.
    type Call: Send + 'static;

    fn handle_call(&mut self, now_ms: u64, call: Self::Call);
    fn handle_net(&mut self, now_ms: u64, event: NetEvent);
    /// The next instant (epoch ms) the state machine must be woken.
    fn poll_timeout(&self) -> Option<u64>;
    fn handle_timeout(&mut self, now_ms: u64);
    /// Does what the state machine asked: sends on `pool`, completes callers.
    fn flush(&mut self, now_ms: u64, pool: &mut Pool);
    /// Starts saying goodbye (unregister); outputs are flushed right after, and their answers
    /// awaited for at most [`SHUTDOWN_WAIT`].
    fn begin_shutdown(&mut self, now_ms: u64);
    /// Last call before the connections close: fail whatever still waits.
    fn finish(&mut self, now_ms: u64);
}

/// What a handle sends its owner.
pub(crate) enum Control<C> {
    Call(C),
    Shutdown(oneshot::Sender<()>),
}

/// The handle side of an owner task: cheap to clone, shared by a client's public handle.
pub(crate) struct Owner<C> {
    tx: mpsc::UnboundedSender<Control<C>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<C> Clone for Owner<C> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            task: self.task.clone(),
        }
    }
}

impl<C: Send + 'static> Owner<C> {
    /// Spawns the owner task of `machine`. `make` receives a weak sender of the owner's own
    /// calls, for helpers (consume tasks) that report back; weak, so that the owner still ends
    /// when every public handle is gone. `request_timeout` is the longest a request waits for
    /// its answer: a connection silent for longer than that while a request waits is closed.
    pub(crate) fn spawn<D>(
        clock: Arc<dyn Clock>,
        connect_timeout: Duration,
        request_timeout: Duration,
        make: impl FnOnce(mpsc::WeakUnboundedSender<Control<C>>) -> D,
    ) -> Self
    where
        D: Driven<Call = C>,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let machine = make(tx.downgrade());
        let task = tokio::spawn(run(machine, clock, connect_timeout, request_timeout, rx));
        Self {
            tx,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Queues a call; `false` once the owner has stopped.
    pub(crate) fn call(&self, call: C) -> bool {
        self.tx.send(Control::Call(call)).is_ok()
    }

    /// Whether the owner has stopped (shut down or failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Asks the owner to shut down and waits until it has. Idempotent.
    pub(crate) async fn shutdown(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Control::Shutdown(done_tx)).is_ok() {
            let _ = done_rx.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            if let Err(e) = task.await {
                error!("client owner ended abnormally: {e}");
            }
        }
    }
}

async fn sleep_until_ms(deadline_ms: Option<u64>, now_ms: u64) {
    match deadline_ms {
        Some(deadline) => {
            tokio::time::sleep(Duration::from_millis(deadline.saturating_sub(now_ms))).await
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until the pool's next request deadline, forever if nothing waits for an answer.
async fn sleep_until_instant(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn run<D: Driven>(
    mut machine: D,
    clock: Arc<dyn Clock>,
    connect_timeout: Duration,
    request_timeout: Duration,
    mut controls: mpsc::UnboundedReceiver<Control<D::Call>>,
) {
    let (mut pool, mut net_rx) = Pool::new(connect_timeout, request_timeout);
    // Start-up outputs (the first route query, the first heartbeat) leave before any input.
    let now = clock.now_ms();
    if machine.poll_timeout().is_some_and(|t| t <= now) {
        machine.handle_timeout(now);
    }
    machine.flush(now, &mut pool);
    let mut calls = Vec::new();
    let mut events = Vec::new();
    let mut shutdown_waiters = Vec::new();
    loop {
        let now = clock.now_ms();
        let deadline = machine.poll_timeout();
        tokio::select! {
            biased;
            control = controls.recv() => match control {
                Some(Control::Call(call)) => calls.push(call),
                Some(Control::Shutdown(done)) => shutdown_waiters.push(done),
                // Every handle is gone: nobody can ask for anything any more.
                None => break,
            },
            Some(event) = net_rx.recv() => events.push(event),
            _ = sleep_until_ms(deadline, now) => {}
            _ = sleep_until_instant(pool.next_deadline()) => {}
        }
        while let Ok(event) = net_rx.try_recv() {
            events.push(event);
        }
        while let Ok(control) = controls.try_recv() {
            match control {
                Control::Call(call) => calls.push(call),
                Control::Shutdown(done) => shutdown_waiters.push(done),
            }
        }
        let now = clock.now_ms();
        for event in events.drain(..) {
            if let Some(event) = pool.observe(event) {
                machine.handle_net(now, event);
            }
        }
        for event in pool.expire(tokio::time::Instant::now()) {
            machine.handle_net(now, event);
        }
        for call in calls.drain(..) {
            machine.handle_call(now, call);
        }
        if machine.poll_timeout().is_some_and(|t| t <= now) {
            machine.handle_timeout(now);
        }
        machine.flush(now, &mut pool);
        if !shutdown_waiters.is_empty() {
            break;
        }
    }
    // Goodbyes: let the machine unregister, and wait a bounded time for the answers.
    let now = clock.now_ms();
    let mark = pool.mark();
    machine.begin_shutdown(now);
    machine.flush(now, &mut pool);
    let until = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    while !pool.answered_since(mark) {
        let now = clock.now_ms();
        let deadline = machine.poll_timeout();
        tokio::select! {
            biased;
            Some(event) = net_rx.recv() => {
                if let Some(event) = pool.observe(event) {
                    machine.handle_net(clock.now_ms(), event);
                }
            }
            _ = sleep_until_ms(deadline, now) => {
                let now = clock.now_ms();
                if machine.poll_timeout().is_some_and(|t| t <= now) {
                    machine.handle_timeout(now);
                }
            }
            _ = tokio::time::sleep_until(until) => {
                debug!("client shutdown: goodbyes not all answered in time");
                break;
            }
        }
        machine.flush(clock.now_ms(), &mut pool);
    }
    machine.finish(clock.now_ms());
    pool.close_all();
    // Calls that raced with the shutdown are dropped here, which fails their callers.
    controls.close();
    while let Ok(control) = controls.try_recv() {
        if let Control::Shutdown(done) = control {
            shutdown_waiters.push(done);
        }
    }
    for done in shutdown_waiters {
        let _ = done.send(());
    }
}

//! A shutdown signal shared by background tasks: `Shutdown::trigger` wakes every `Signal`.

use tokio::sync::watch;

/// Held by whoever decides to stop.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

/// Held by each task that must stop; cloning is cheap.
#[derive(Debug, Clone)]
pub struct Signal(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (Self, Signal) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), Signal(rx))
    }

    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Signal {
    /// Resolves once shutdown was triggered (or the `Shutdown` was dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown was triggered, without waiting.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

//! The dispatcher's wake-up on new pending incidents, without lost wake-ups.
//!
//! [`Store::pending_notified`] only counts a notification once its future has been polled. A
//! fresh future made after a wake-up and first polled after the next claim pass would miss an
//! incident recorded during that pass until the poll tick. So the dispatcher *arms* the future
//! (polls it once) before each pass, and keeps it across waits.

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::store::Store;

/// Polls of a ready wake-up in one [`Wakeup::arm`] before it is remembered as already woken.
const ARM_POLLS: usize = 2;

pub(crate) struct Wakeup {
    store: Store,
    armed: Option<BoxFuture<'static, ()>>,
    /// A wake-up came while arming; the next [`Wakeup::wait`] returns at once.
    woken: bool,
}

impl Wakeup {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            armed: None,
            woken: false,
        }
    }

    fn fresh(&self) -> BoxFuture<'static, ()> {
        let store = self.store.clone();
        async move { store.pending_notified().await }.boxed()
    }

    /// Registers for the next notification; call before looking at the queue.
    pub(crate) fn arm(&mut self) {
        for _ in 0..ARM_POLLS {
            let fut = match self.armed.take() {
                Some(f) => f,
                None => self.fresh(),
            };
            let mut fut = fut;
            if (&mut fut).now_or_never().is_none() {
                self.armed = Some(fut);
                return;
            }
        }
        // Notifications keep arriving: the pass about to run sees their incidents, and the
        // next wait goes round again.
        self.woken = true;
    }

    /// Completes on the next notification since the last [`Wakeup::arm`]. Cancel-safe.
    pub(crate) async fn wait(&mut self) {
        if std::mem::take(&mut self.woken) {
            return;
        }
        if self.armed.is_none() {
            self.armed = Some(self.fresh());
        }
        if let Some(fut) = self.armed.as_mut() {
            fut.await;
        }
        self.armed = None;
    }
}

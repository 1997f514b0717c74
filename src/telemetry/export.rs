//! The bounded export queue shared by trace spans and log records.
//!
//! Export never slows the data path: [`ExportQueue::push`] only tries to put an item on a
//! bounded channel and counts it as dropped when the channel is full. One task per kind
//! ([`drain`]) takes the items in batches (up to `max`, or what arrived within 1 s of the first)
//! and hands each batch to the exporter; a failed export counts the batch as dropped.

use std::fmt;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// The sending half: never blocks, counts what does not fit.
pub struct ExportQueue<T> {
    /// Items waiting for the export task; `try_send` only.
    tx: mpsc::Sender<T>,
    /// Counts items dropped because the queue was full.
    dropped: Counter,
}

impl<T> fmt::Debug for ExportQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportQueue").field("capacity", &self.tx.max_capacity()).finish()
    }
}

impl<T> ExportQueue<T> {
    /// A queue of `capacity` items (at least 1) and the receiver for [`drain`].
    pub fn new(capacity: usize, dropped: Counter) -> (Self, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ExportQueue { tx, dropped }, rx)
    }

    /// Queue `item`, or drop and count it when the queue is full (or the task has ended).
    pub fn push(&self, item: T) {
        if self.tx.try_send(item).is_err() {
            self.dropped.inc();
        }
    }
}

/// Export batches of up to `max` items until the queue closes; every item ends up counted in
/// `exported` or `dropped`.
pub async fn drain<T, E: fmt::Display, F: Future<Output = Result<(), E>>>(
    mut rx: mpsc::Receiver<T>,
    max: usize,
    mut export: impl FnMut(Vec<T>) -> F,
    exported: Counter,
    dropped: Counter,
    what: &'static str,
) {
    let mut batch = Vec::with_capacity(max);
    while next_batch(&mut rx, &mut batch, max).await {
        let n = batch.len() as u64;
        match export(std::mem::take(&mut batch)).await {
            Ok(()) => {
                exported.inc_by(n);
            }
            Err(e) => {
                dropped.inc_by(n);
                tracing::debug!(error = %e, items = n, what, "OTLP export failed; the batch is dropped.");
            }
        }
        batch.clear();
    }
}

/// Wait for the next item, then take more until `max` or until 1 s after the first arrived;
/// false once the channel is closed and empty.
async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) -> bool {
    let Some(first) = rx.recv().await else { return false };
    batch.push(first);
    let deadline = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(deadline);
    while batch.len() < max {
        tokio::select! {
            next = rx.recv() => match next {
                Some(item) => batch.push(item),
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_counts_and_every_item_is_accounted_for() {
        let (exported, dropped) = (Counter::default(), Counter::default());
        let (queue, rx) = ExportQueue::new(3, dropped.clone());
        for i in 0..5 {
            queue.push(i);
        }
        assert_eq!(dropped.get(), 2, "two items did not fit");
        drop(queue);
        let mut seen = Vec::new();
        let export = |batch: Vec<i32>| {
            seen.extend(batch);
            std::future::ready(Ok::<(), String>(()))
        };
        drain(rx, 2, export, exported.clone(), dropped.clone(), "test").await;
        assert_eq!(seen, vec![0, 1, 2]);
        assert_eq!(exported.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_export_counts_its_batch_as_dropped() {
        let (exported, dropped) = (Counter::default(), Counter::default());
        let (queue, rx) = ExportQueue::new(8, dropped.clone());
        (0..4).for_each(|i| queue.push(i));
        drop(queue);
        let export = |_: Vec<i32>| std::future::ready(Err::<(), _>("collector down"));
        drain(rx, 8, export, exported.clone(), dropped.clone(), "test").await;
        assert_eq!((exported.get(), dropped.get()), (0, 4));
    }
}

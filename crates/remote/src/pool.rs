//! Many requests in flight at once on a bounded set of threads. Servers that batch continuously
//! (vLLM, SGLang, llama.cpp server with slots) go faster the more branches they see together;
//! the bound keeps a desktop from opening hundreds of connections.
//!
//! Workers send what they produce back over a channel, so the caller's callback (tree events,
//! the strategy's `on_token`) runs on the caller's thread, in arrival order. The caller is asked
//! every few milliseconds whether to stop; when it says so, `cancel` runs once (closing every
//! stream of the session) and the workers finish with whatever error that gives them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

/// How often the caller's stop check runs while it waits for events.
const POLL: Duration = Duration::from_millis(20);

/// A job's body: the job and a way to send events back to the caller's thread.
pub type Work<'a, J, R, E> = dyn Fn(J, &dyn Fn(E)) -> R + Sync + 'a;

enum Msg<E, R> {
    Event(E),
    Done(usize, R),
}

/// Run every job with `work`, at most `concurrency` at a time, and return their results in job
/// order. `work(job, emit)` may call `emit` from its thread; each event reaches `on_event` on the
/// calling thread. `should_stop` is polled while waiting; the first time it returns true,
/// `cancel` is called (once).
pub fn run_bounded<J, R, E>(
    jobs: Vec<J>,
    concurrency: usize,
    work: &Work<'_, J, R, E>,
    on_event: &mut dyn FnMut(E),
    should_stop: &mut dyn FnMut() -> bool,
    cancel: &dyn Fn(),
) -> Vec<R>
where
    J: Send,
    R: Send,
    E: Send,
{
    let count = jobs.len();
    if count == 0 {
        return Vec::new();
    }
    let queue: Mutex<VecDeque<(usize, J)>> = Mutex::new(jobs.into_iter().enumerate().collect());
    let (tx, rx) = crossbeam_channel::unbounded::<Msg<E, R>>();
    let mut results: Vec<Option<R>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers = concurrency.clamp(1, count);
        for w in 0..workers {
            let worker_tx = tx.clone();
            let queue = &queue;
            let spawned = std::thread::Builder::new()
                .name(format!("remote-{w}"))
                .spawn_scoped(scope, move || loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some((i, job)) = next else { break };
                    let emit = |e: E| {
                        let _ = worker_tx.send(Msg::Event(e));
                    };
                    let r = work(job, &emit);
                    let _ = worker_tx.send(Msg::Done(i, r));
                });
            if let Err(e) = spawned {
                // No thread: the jobs left wait for the workers that did start; with none, run
                // them here rather than lose them.
                tracing::warn!("could not start a request thread: {e}");
                if w == 0 {
                    while let Some((i, job)) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                        let emit = |e: E| {
                            let _ = tx.send(Msg::Event(e));
                        };
                        let r = work(job, &emit);
                        let _ = tx.send(Msg::Done(i, r));
                    }
                }
                break;
            }
        }
        drop(tx);
        let mut done = 0;
        let mut cancelled = false;
        while done < count {
            if !cancelled && should_stop() {
                cancelled = true;
                cancel();
            }
            match rx.recv_timeout(POLL) {
                Ok(Msg::Event(e)) => on_event(e),
                Ok(Msg::Done(i, r)) => {
                    results[i] = Some(r);
                    done += 1;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_than_the_bound_in_flight_and_results_in_order() {
        let live = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let mut events = Vec::new();
        let out = run_bounded(
            (0..12).collect(),
            3,
            &|j: usize, emit: &dyn Fn(usize)| {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                emit(j);
                live.fetch_sub(1, Ordering::SeqCst);
                j * 10
            },
            &mut |e| events.push(e),
            &mut || false,
            &|| {},
        );
        assert_eq!(out, (0..12).map(|j| j * 10).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        events.sort_unstable();
        assert_eq!(events, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn stop_runs_cancel_once() {
        let cancels = AtomicUsize::new(0);
        let out = run_bounded(
            vec![(); 4],
            4,
            &|(), _emit: &dyn Fn(())| std::thread::sleep(Duration::from_millis(30)),
            &mut |()| {},
            &mut || true,
            &|| {
                cancels.fetch_add(1, Ordering::SeqCst);
            },
        );
        assert_eq!(out.len(), 4);
        assert_eq!(cancels.load(Ordering::SeqCst), 1);
    }
}

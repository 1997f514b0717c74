//! edge-gateway addition: a pinned box whose memory block goes back to a small per-thread pool
//! when it is dropped, for the readiness futures of pipelines (see `pl_inner::CheckReadiness`).
//!
//! A pipeline's readiness check is a future of a few KB (the whole service chain's `ready`),
//! run to completion many times per connection. Kept inline it costs every connection its size
//! for the connection's lifetime; boxed per check it costs a large `malloc`/`free` per packet.
//! Here a check takes a block of the right layout from this thread's pool (or the allocator) and
//! gives it back when it completes, so an idle connection holds none and a busy thread reuses a
//! handful.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Blocks kept per thread, of any layouts.
const POOL_MAX: usize = 16;

/// Free blocks; freed with the thread.
struct Pool(Vec<(Layout, NonNull<u8>)>);

impl Drop for Pool {
    fn drop(&mut self) {
        for (layout, raw) in self.0.drain(..) {
            // SAFETY: each block was allocated by `alloc` with its layout and is unused.
            unsafe { dealloc(raw.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool(Vec::new())) };
}

/// A value of `T` in a block that is never moved until it is dropped in place.
pub(crate) struct PooledBox<T> {
    ptr: NonNull<T>,
}

impl<T> PooledBox<T> {
    pub(crate) fn new(value: T) -> Self {
        let layout = Layout::new::<T>();
        let ptr = if layout.size() == 0 {
            NonNull::<T>::dangling()
        } else {
            let taken = POOL
                .try_with(|p| {
                    let p = &mut p.borrow_mut().0;
                    let i = p.iter().rposition(|(l, _)| *l == layout)?;
                    Some(p.swap_remove(i).1)
                })
                .ok()
                .flatten();
            let raw = taken.unwrap_or_else(|| {
                // SAFETY: the layout's size is not zero.
                let raw = unsafe { alloc(layout) };
                NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(layout))
            });
            raw.cast::<T>()
        };
        // SAFETY: `ptr` is valid for writes of `T` and aligned (a block of `T`'s layout).
        unsafe { ptr.as_ptr().write(value) };
        PooledBox { ptr }
    }

    fn as_pin_mut(&mut self) -> Pin<&mut T> {
        // SAFETY: the value is never moved out of its block; it is dropped in place.
        unsafe { Pin::new_unchecked(self.ptr.as_mut()) }
    }
}

impl<T> Drop for PooledBox<T> {
    fn drop(&mut self) {
        let layout = Layout::new::<T>();
        // SAFETY: the block holds an initialised `T`, dropped once here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        if layout.size() == 0 {
            return;
        }
        let raw = self.ptr.cast::<u8>();
        let kept = POOL
            .try_with(|p| {
                let p = &mut p.borrow_mut().0;
                if p.len() < POOL_MAX {
                    p.push((layout, raw));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: allocated by `alloc` with this layout, not in the pool.
            unsafe { dealloc(raw.as_ptr(), layout) };
        }
    }
}

impl<F: Future> Future for PooledBox<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.as_pin_mut().poll(cx)
    }
}

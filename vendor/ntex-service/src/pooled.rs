//! edge-gateway addition: a pinned box whose memory block goes back to a small per-thread pool
//! when it is dropped, for readiness futures (see `pl_inner::CheckReadiness`,
//! `pl_state::CheckReadinessFut` and `Ctx::call`).
//!
//! A readiness check is a future of up to a few KB (the whole service chain's `ready`), run to
//! completion many times per connection. Kept inline it costs every connection its size for the
//! connection's lifetime; boxed per check it costs a `malloc`/`free` per packet and layer. Here
//! a check takes a block of its size class from this thread's pool (or the allocator) and gives
//! it back when it completes, so an idle connection holds none and a busy thread reuses a
//! handful.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Size classes are multiples of this many bytes.
const CLASS_BYTES: usize = 64;
/// Classes pooled: blocks of up to `CLASS_BYTES * CLASSES` bytes (larger ones are plain boxes).
const CLASSES: usize = 64;
/// Alignment of every pooled block.
const CLASS_ALIGN: usize = 16;
/// Free blocks kept per class and thread.
const PER_CLASS: usize = 8;

/// Free blocks by size class; freed with the thread.
struct Pool([Vec<NonNull<u8>>; CLASSES]);

impl Drop for Pool {
    fn drop(&mut self) {
        for (class, blocks) in self.0.iter_mut().enumerate() {
            for raw in blocks.drain(..) {
                // SAFETY: each block was allocated by `alloc` with its class's layout and is unused.
                unsafe { dealloc(raw.as_ptr(), class_layout(class)) };
            }
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool([const { Vec::new() }; CLASSES])) };
}

/// The layout of class `class`'s blocks.
const fn class_layout(class: usize) -> Layout {
    match Layout::from_size_align((class + 1) * CLASS_BYTES, CLASS_ALIGN) {
        Ok(layout) => layout,
        Err(_) => panic!("class layout"),
    }
}

/// The size class of `T`, if it is pooled.
const fn class_of<T>() -> Option<usize> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 || layout.align() > CLASS_ALIGN || layout.size() > CLASS_BYTES * CLASSES {
        None
    } else {
        Some((layout.size() - 1) / CLASS_BYTES)
    }
}

/// A value of `T` in a block that is never moved until it is dropped in place.
pub(crate) struct PooledBox<T> {
    ptr: NonNull<T>,
}

impl<T> PooledBox<T> {
    const CLASS: Option<usize> = class_of::<T>();

    pub(crate) fn new(value: T) -> Self {
        let layout = Layout::new::<T>();
        let ptr = if layout.size() == 0 {
            NonNull::<T>::dangling()
        } else {
            let (taken, layout) = match Self::CLASS {
                Some(class) => {
                    let taken = POOL.try_with(|p| p.borrow_mut().0[class].pop()).ok().flatten();
                    (taken, class_layout(class))
                }
                None => (None, layout),
            };
            let raw = taken.unwrap_or_else(|| {
                // SAFETY: the layout's size is not zero.
                let raw = unsafe { alloc(layout) };
                NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(layout))
            });
            raw.cast::<T>()
        };
        // SAFETY: `ptr` is valid for writes of `T` and aligned (a block at least as large as `T`,
        // aligned to at least `T`'s alignment).
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
        // SAFETY: the block holds an initialised `T`, dropped once here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        if size_of::<T>() == 0 {
            return;
        }
        let raw = self.ptr.cast::<u8>();
        let layout = match Self::CLASS {
            Some(class) => {
                let kept = POOL
                    .try_with(|p| {
                        let blocks = &mut p.borrow_mut().0[class];
                        if blocks.len() < PER_CLASS {
                            blocks.push(raw);
                            true
                        } else {
                            false
                        }
                    })
                    .unwrap_or(false);
                if kept {
                    return;
                }
                class_layout(class)
            }
            None => Layout::new::<T>(),
        };
        // SAFETY: allocated by `alloc` with this layout, not in the pool.
        unsafe { dealloc(raw.as_ptr(), layout) };
    }
}

impl<F: Future> Future for PooledBox<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.as_pin_mut().poll(cx)
    }
}

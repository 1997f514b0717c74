//! A device's TCP socket under ntex-io, driven by one task per connection.
//!
//! ntex-net's tokio driver (`ntex_net::from_tcp_stream`) starts two tasks for every socket, one
//! reading and one writing. Here one task does both: one spawn, one task's memory and one poll
//! per wake-up fewer for every connection (docs/BENCHMARKS.md, "Idle connections"). The read
//! and write steps are ntex-net 4.0.0's (`src/tokio/io.rs`, MIT or Apache-2.0) with one change:
//! a read that leaves room in the buffer ends the reading, as tokio's own `poll_read` does,
//! where ntex-net's step reads once more to hear `EAGAIN` (see `read` below). Their scheduling
//! differs too: each wake-up runs the read side, then the write side, and the task ends once
//! the write side has seen the connection stopped (the read side has nothing left to do by
//! then).
//!
//! A graceful close is driven by the read side: ntex-io's `IoContext::poll_read_ready` runs the
//! filters' shutdown (TLS close_notify) and waits for the write buffer to drain before it stops
//! the connection, which then ends the write side. ntex-io 4.0.0 never reports `Shutdown` to the
//! write side (its base filter answers `Terminate` once stopping), so the closing phase below is
//! ntex-net's, kept for an ntex-io that does.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll, ready};
use std::{any, cmp, io, mem, rc::Rc};

use ntex_bytes::{BufMut, BytePage};
use ntex_io::{Handle, Io, IoContext, IoStream, IoTaskStatus, Readiness, types};
use ntex_service::cfg::SharedCfg;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most bytes and buffers handed to one `writev`.
const MAX_WRITE_SIZE: usize = 64 * 1024;
const MAX_WRITE_ITEMS: usize = 16;

/// A socket tokio's `accept` gave, as an ntex [`Io`], with `TCP_NODELAY`; `peer` is the
/// address `accept` gave (asked for by the gate and the logs, so it is kept rather than asked
/// of the kernel again). Called on an I/O thread.
pub fn io(socket: TcpStream, peer: SocketAddr, cfg: SharedCfg) -> io::Result<Io> {
    socket.set_nodelay(true)?;
    Ok(Io::new(Device { socket, peer }, cfg))
}

/// The socket, until ntex-io starts it.
struct Device {
    socket: TcpStream,
    peer: SocketAddr,
}

impl IoStream for Device {
    fn start(self, ctx: IoContext) -> Box<dyn Handle> {
        let socket = Rc::new(self.socket);
        tokio::task::spawn_local(run(socket.clone(), ctx));
        Box::new(Started { socket, peer: self.peer })
    }
}

/// What ntex-io keeps of a started socket: its peer's address, and a way to write at once.
struct Started {
    socket: Rc<TcpStream>,
    peer: SocketAddr,
}

impl Handle for Started {
    fn query(&self, id: any::TypeId) -> Option<Box<dyn any::Any>> {
        (id == any::TypeId::of::<types::PeerAddr>()).then(|| Box::new(types::PeerAddr(self.peer)) as Box<dyn any::Any>)
    }

    fn write(&self, ctx: &IoContext) {
        let _ = write(&self.socket, ctx);
    }

    // The task is woken through the wakers it registered; nothing more to do.
    fn notify(&self, _: &IoContext) {}
}

/// How the write side ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Ended {
    /// Asked to shut down gracefully (not reported by ntex-io 4.0.0; see the module's doc).
    Shutdown,
    /// Stopped, or failed.
    Terminate,
}

/// Where the write side is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    Closing { flush: bool },
    Done,
}

/// The connection's one task.
async fn run(socket: Rc<TcpStream>, ctx: IoContext) {
    let mut reading = true;
    let mut phase = Phase::Serving;
    poll_fn(|cx| {
        if reading && read_side(&socket, &ctx, cx).is_ready() {
            reading = false;
        }
        loop {
            phase = match phase {
                Phase::Serving => match ready!(write_side(&socket, &ctx, cx)) {
                    _ if ctx.is_stopped() => Phase::Done,
                    ended => Phase::Closing { flush: ended == Ended::Shutdown },
                },
                Phase::Closing { flush } => {
                    ready!(closing(&socket, &ctx, flush, cx));
                    Phase::Done
                }
                Phase::Done => {
                    if !ctx.is_stopped() {
                        ctx.stop(None);
                    }
                    return Poll::Ready(());
                }
            };
        }
    })
    .await;
}

/// Read while there is something to read and room for it; `Ready` once reading is over.
fn read_side(socket: &TcpStream, ctx: &IoContext, cx: &mut Context<'_>) -> Poll<()> {
    'outer: loop {
        return match ready!(ctx.poll_read_ready(cx)) {
            Readiness::Ready => match ready!(socket.poll_read_ready(cx)) {
                Ok(()) => loop {
                    return match read(socket, ctx) {
                        Poll::Ready(IoTaskStatus::Io) => continue,
                        Poll::Ready(IoTaskStatus::Pause) => Poll::Pending,
                        Poll::Ready(IoTaskStatus::Stop) => Poll::Ready(()),
                        Poll::Pending => continue 'outer,
                    };
                },
                Err(err) => {
                    ctx.stop(Some(err));
                    Poll::Ready(())
                }
            },
            Readiness::Shutdown | Readiness::Terminate => Poll::Ready(()),
        };
    }
}

/// Write what ntex-io buffers while the socket takes it; `Ready` once asked to stop.
fn write_side(socket: &TcpStream, ctx: &IoContext, cx: &mut Context<'_>) -> Poll<Ended> {
    match ready!(ctx.poll_write_ready(cx)) {
        Readiness::Ready => loop {
            return match ready!(socket.poll_write_ready(cx)) {
                Ok(()) => match write(socket, ctx) {
                    IoTaskStatus::Io => continue,
                    IoTaskStatus::Pause => Poll::Pending,
                    IoTaskStatus::Stop => Poll::Ready(Ended::Terminate),
                },
                Err(err) => {
                    ctx.update_write_status(Err(err));
                    Poll::Ready(Ended::Terminate)
                }
            };
        },
        Readiness::Shutdown => Poll::Ready(Ended::Shutdown),
        Readiness::Terminate => Poll::Ready(Ended::Terminate),
    }
}

/// Write out the rest and wait for ntex-io to close the connection.
fn closing(socket: &TcpStream, ctx: &IoContext, flush: bool, cx: &mut Context<'_>) -> Poll<()> {
    match ready!(socket.poll_write_ready(cx)) {
        Ok(()) => match write(socket, ctx) {
            IoTaskStatus::Stop => Poll::Ready(()),
            _ => ctx.shutdown(flush, cx),
        },
        Err(err) => {
            ctx.update_write_status(Err(err));
            Poll::Ready(())
        }
    }
}

/// One `write`/`writev` of ntex-io's write buffer, and what ntex-io makes of it: `Io` to write
/// again, `Pause` to wait (socket full, or nothing left), `Stop` when the connection is over.
fn write(socket: &TcpStream, ctx: &IoContext) -> IoTaskStatus {
    let result = ctx.with_write_buf(|dst| {
        let mut pages: [Option<BytePage>; MAX_WRITE_ITEMS] = Default::default();
        let mut bufs: [mem::MaybeUninit<io::IoSlice<'_>>; MAX_WRITE_ITEMS] = [mem::MaybeUninit::uninit(); MAX_WRITE_ITEMS];
        let (mut num, mut size) = (0, 0);
        while let Some(page) = dst.take() {
            size += page.len();
            // SAFETY: the page is kept in `pages` for as long as `bufs` lives.
            bufs[num] = mem::MaybeUninit::new(io::IoSlice::new(unsafe { mem::transmute::<&[u8], &[u8]>(page.as_ref()) }));
            pages[num] = Some(page);
            num += 1;
            if num == MAX_WRITE_ITEMS || size >= MAX_WRITE_SIZE {
                break;
            }
        }
        if num == 0 {
            return Ok(false);
        }
        // SAFETY: the first `num` slots were initialised just above.
        let bufs = unsafe { &*(&raw const bufs[..num] as *const [io::IoSlice<'_>]) };
        let written = match if num == 1 { socket.try_write(&bufs[0]) } else { socket.try_write_vectored(bufs) } {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "failed to write frame to transport")),
            Ok(n) => Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => return Err(e),
        };
        if let Some(mut left) = written {
            for page in pages[..num].iter_mut().flatten() {
                let len = cmp::min(page.len(), left);
                page.advance_to(len);
                left -= len;
                if left == 0 {
                    break;
                }
            }
        }
        // What was not written goes back to the buffer, in order.
        for page in pages[..num].iter_mut().rev().filter_map(Option::take) {
            dst.prepend(page);
        }
        Ok(written.is_some())
    });
    ctx.update_write_status(result)
}

/// One `read` into ntex-io's read buffer; `Pending` when the socket has nothing more.
///
/// A read that leaves room in the buffer has emptied the socket (the reactor's epoll is
/// edge-triggered: the next bytes to arrive wake the task again), so the socket's readiness is
/// cleared with it, as tokio's own `poll_read` does, instead of by one more `read` that would
/// only answer `EAGAIN` (ntex-net's step, copied before, made that `read`). (Urgent data is
/// the exception, as for tokio: `recv` stops short at its mark. MQTT has no use for it; a peer
/// that sends it stalls only its own connection until its next bytes.)
fn read(socket: &TcpStream, ctx: &IoContext) -> Poll<IoTaskStatus> {
    let mut buf = ctx.get_read_buf();
    let spare = buf.chunk_mut();
    let (dst, room) = (spare.as_mut_ptr(), spare.len());
    let mut emptied = 0;
    // tokio clears the readiness it saw before the read when the closure says `WouldBlock`;
    // bytes that arrive meanwhile set it again.
    let result = socket.try_io(Interest::READABLE, || {
        // SAFETY: `recv` writes at most `room` bytes into the spare capacity at `dst`.
        let n = unsafe { libc::recv(socket.as_raw_fd(), dst.cast(), room, 0) };
        match usize::try_from(n) {
            Err(_) => Err(io::Error::last_os_error()),
            Ok(n) if n > 0 && n < room => {
                emptied = n;
                Err(io::ErrorKind::WouldBlock.into())
            }
            Ok(n) => Ok(n),
        }
    });
    let mut pending = false;
    let result = match result {
        Ok(0) => {
            ctx.stop(None);
            Ok(0)
        }
        Ok(n) => {
            // SAFETY: `recv` initialised these `n` bytes.
            unsafe { buf.advance_mut(n) }
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            pending = true;
            // SAFETY: as above, for a read that emptied the socket (0 when nothing was read).
            unsafe { buf.advance_mut(emptied) }
            Ok(emptied)
        }
        Err(e) => Err(e),
    };
    match ctx.update_read_status(buf, result) {
        IoTaskStatus::Io if pending => Poll::Pending,
        status => Poll::Ready(status),
    }
}

#[cfg(test)]
mod tests;

//! Tests of `stream.rs`: real loopback sockets under a runtime like an I/O thread's.

use std::io::{Read, Write};
use std::time::Duration;

use ntex_io::IoConfig;
use ntex_io::types::PeerAddr;
use ntex_util::time::Seconds;

use super::*;

/// Bound on every wait below: a lost wake-up fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `test` on a runtime like an I/O thread's, with the server's end of a loopback
/// connection whose client end is given to `client` on a thread of its own. `test` hands the
/// `Io` back, and the client must be done once it is dropped, with the runtime still running:
/// ntex-io closes the socket when the `Io` goes, provided the socket's task has ended too
/// (a task left behind keeps the socket open, and a client reading to its end waits).
fn with_connection<T: Send + 'static>(
    client: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
    test: impl AsyncFnOnce(Io, std::net::SocketAddr) -> Io + 'static,
) -> T {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        client(socket)
    });
    // (A flush may take its time: a client below reads late.)
    let cfg = SharedCfg::new("stream-test").add(IoConfig::new().set_disconnect_timeout(Seconds(30))).build();
    listener.set_nonblocking(true).unwrap();
    let client = ntex_rt::System::new("stream-test", ntex_net::DefaultRuntime).block_on(async move {
        // Accepted as `accept.rs` does: the socket starts out marked ready.
        let (socket, peer) = within("the accept", tokio::net::TcpListener::from_std(listener).unwrap().accept()).await.unwrap();
        drop(test(io(socket, peer, cfg).unwrap(), peer).await);
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !client.is_finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(client.is_finished(), "the client is not done after the Io was dropped (the socket's task left behind?)");
        client
    });
    client.join().unwrap()
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.unwrap_or_else(|_| panic!("{what} never happened"))
}

#[test]
fn what_is_written_arrives_whole_and_in_order_before_the_close_even_to_a_late_reader() {
    // Far more than the socket buffers hold, so writes meet a full socket and resume.
    let sent: Vec<u8> = (0..24_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = sent.clone();
    let received = with_connection(
        |mut client| {
            client.write_all(b"ping").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        },
        async move |io, peer| {
            assert_eq!(io.query::<PeerAddr>().as_ref().map(|p| p.0), Some(peer), "the peer's address");
            let mut ping = [0u8; 4];
            within("the read", io.read(&mut ping)).await.unwrap();
            assert_eq!(&ping, b"ping");
            for chunk in sent.chunks(100_000) {
                io.encode_slice(chunk).unwrap();
            }
            within("the shutdown", io.shutdown()).await.unwrap();
            io
        },
    );
    assert_eq!(received.len(), expected.len(), "bytes received before the close");
    assert!(received == expected, "the bytes arrive as written, in order");
}

#[test]
fn a_peer_that_closes_ends_the_read_side() {
    with_connection(
        |mut client| {
            client.write_all(b"last words").unwrap();
            let mut ok = [0u8; 2];
            client.read_exact(&mut ok).unwrap();
            assert_eq!(&ok, b"ok");
        },
        async move |io, _| {
            let mut got = [0u8; 10];
            within("the read", io.read(&mut got)).await.unwrap();
            assert_eq!(&got, b"last words");
            io.encode_slice(b"ok").unwrap();
            let end = within("the close", io.read_ready()).await;
            assert!(matches!(end, Ok(None)), "read_ready after the peer's close: {end:?}");
            assert!(io.is_closed(), "the connection is closed");
            io
        },
    );
}

#[test]
fn bytes_that_arrive_after_a_read_emptied_the_socket_still_reach_the_reader() {
    // Each byte arrives on its own and is read short (room is left in the buffer), which
    // clears the socket's readiness without asking the kernel again: the next byte must
    // still wake the task, and none may be lost.
    const PIECES: u8 = 20;
    with_connection(
        |mut client| {
            for i in 0..PIECES {
                client.write_all(&[i]).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut ok = [0u8; 2];
            client.read_exact(&mut ok).unwrap();
            assert_eq!(&ok, b"ok");
        },
        async move |io, _| {
            for i in 0..PIECES {
                let mut one = [0u8; 1];
                within("the next byte", io.read(&mut one)).await.unwrap();
                assert_eq!(one[0], i, "the bytes in order");
            }
            io.encode_slice(b"ok").unwrap();
            within("the shutdown", io.shutdown()).await.unwrap();
            io
        },
    );
}

#[test]
fn a_burst_larger_than_the_read_buffer_is_read_whole_with_nothing_after_it() {
    // The reads that fill the buffer leave bytes in the socket, and no more arrive to wake
    // the task: its readiness must survive them.
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let expected = sent.clone();
    with_connection(
        move |mut client| {
            client.write_all(&sent).unwrap();
            let mut ok = [0u8; 2];
            client.read_exact(&mut ok).unwrap();
            assert_eq!(&ok, b"ok");
        },
        async move |io, _| {
            let mut received = Vec::new();
            let mut chunk = [0u8; 1000];
            while received.len() < expected.len() {
                within("the rest of the burst", io.read(&mut chunk)).await.unwrap();
                received.extend_from_slice(&chunk);
            }
            assert!(received == expected, "the burst arrives as sent, in order");
            io.encode_slice(b"ok").unwrap();
            within("the shutdown", io.shutdown()).await.unwrap();
            io
        },
    );
}

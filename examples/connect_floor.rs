//! The floor under the gateway's accept rate, for `bench/idle.sh --floor`: the least a tokio
//! server does per MQTT CONNECT. One current-thread runtime (like one gateway I/O thread)
//! accepts, spawns one task per connection, sets `TCP_NODELAY` (as the gateway and mosquitto
//! do), reads one MQTT 3.1.1 CONNECT, answers with a CONNACK that accepts it, then holds the
//! connection until the peer closes it. No session, no authentication, no metrics, no
//! codec: what is left of a CONNECT's cost here is the runtime's and the kernel's, which any
//! tokio-based design pays. A packet that is not a CONNECT closes its connection.
//!
//! Prints `listening on ADDR` on stdout once it accepts; runs until killed.

use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: connect_floor [--listen HOST:PORT]   (default 127.0.0.1:1883)";

/// A CONNECT's remaining length is at most four bytes; anything longer is not MQTT.
const MAX_LENGTH_BYTES: usize = 4;

fn main() -> ExitCode {
    let mut listen = "127.0.0.1:1883".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("connect_floor: unknown or incomplete option {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("connect_floor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(&listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connect_floor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str) -> Result<(), String> {
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on {listen}");
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection(socket).await {
                        eprintln!("connect_floor: connection closed: {e}");
                    }
                });
            }
            // Out of descriptors, say: the benchmark reports the failure on its side. A pause,
            // so that an error that lasts does not spin the CPU being measured.
            Err(e) => {
                eprintln!("connect_floor: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: its CONNECT, a CONNACK, then whatever the peer sends is read and dropped
/// until it closes.
async fn connection(mut socket: TcpStream) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut buf = [0u8; 512];
    let mut have = 0;
    let (header_len, packet_len) = loop {
        if let Some(lens) = complete(&buf[..have])? {
            break lens;
        }
        if have == buf.len() {
            return Err(invalid("a CONNECT longer than 512 bytes"));
        }
        let n = socket.read(&mut buf[have..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    };
    // The variable header starts with the protocol name, "MQTT".
    if packet_len < header_len + 6 || &buf[header_len..header_len + 6] != b"\0\x04MQTT" {
        return Err(invalid("not MQTT"));
    }
    socket.write_all(&[0x20, 0x02, 0x00, 0x00]).await?;
    while socket.read(&mut buf).await? > 0 {}
    Ok(())
}

/// The lengths of the fixed header and of the whole CONNECT at the start of `buf`, once all of
/// it is there; `None` while more is needed.
fn complete(buf: &[u8]) -> std::io::Result<Option<(usize, usize)>> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first != 0x10 {
        return Err(invalid("the first packet is not a CONNECT"));
    }
    let mut remaining = 0usize;
    for i in 0..MAX_LENGTH_BYTES {
        let Some(&byte) = buf.get(1 + i) else { return Ok(None) };
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let header_len = 2 + i;
            let packet_len = header_len + remaining;
            return Ok((buf.len() >= packet_len).then_some((header_len, packet_len)));
        }
    }
    Err(invalid("a malformed remaining length"))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

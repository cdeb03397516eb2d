//! A minimal keep-alive HTTP/1.1 client side for the benchmarks: what the
//! load generators share.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads one `200` response to its end (the body by its Content-Length,
/// which it must have), through `buf`; the body is discarded.
pub async fn read_response(stream: &mut TcpStream, buf: &mut [u8]) {
    let mut filled = 0;
    let (head_end, length) = loop {
        let n = stream.read(&mut buf[filled..]).await.unwrap();
        assert!(n > 0, "server closed the connection");
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .expect("a Content-Length");
            break (end + 4, length);
        }
    };
    let mut left = (head_end + length).saturating_sub(filled);
    while left > 0 {
        let n = stream.read(buf).await.unwrap();
        assert!(n > 0, "server closed the connection");
        left = left.saturating_sub(n);
    }
}

//! Lets every mainstream gRPC client call the Unix socket.
//!
//! gRPC's C core (the Python, C++, Ruby and PHP clients) and grpc-java send the socket path as
//! the HTTP/2 `:authority` of calls over a Unix socket (`tmp%2Fgraspd.sock`). That is not a valid
//! URI authority, and the HTTP/2 server under tonic refuses such a request with `RST_STREAM
//! PROTOCOL_ERROR` before any handler runs, so those clients failed every call, health and
//! reflection included. The authority means nothing on a Unix socket (there is one server
//! behind it), so connections accepted there pass through [`Normalized`]: it reads the client's
//! HTTP/2 frames and replaces an `:authority` that is not a valid authority with `localhost`
//! before the server sees it, leaving every other byte as it was.
//!
//! Rewriting one header means re-encoding the header blocks (HPACK compresses them against a
//! table that both ends keep in step), so [`Rewriter`] decodes every block of the connection and
//! sends it on as plain literals that touch no table. That costs microseconds per call; the
//! server's answers are not touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4), passed on unchanged.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Frames this rewriter writes are at most this long: every HTTP/2 peer accepts 16 KiB frames.
const MAX_FRAME_PAYLOAD: usize = 16 * 1024;
/// A header block larger than this is passed on untouched, for the server to refuse.
const MAX_BLOCK: usize = 1024 * 1024;
/// The largest dynamic table a client may ask for (the server offers the default 4 KiB).
const MAX_TABLE: usize = 64 * 1024;
/// What a missing or unusable authority becomes.
const LOCALHOST: &[u8] = b"localhost";

/// The HTTP/2 byte stream from a client, with `:authority` made valid. Pure: bytes in, bytes
/// out, so it is tested without sockets.
pub struct Rewriter {
    preface_left: usize,
    input: Vec<u8>,
    output: Vec<u8>,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
    /// Something did not parse: everything from here on is passed on as it came, and the
    /// server's own checks answer it.
    passthrough: bool,
}

/// A HEADERS frame waiting for its CONTINUATION frames.
struct Pending {
    stream: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// The frames as received, should the block need passing on untouched.
    raw: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE);
        Self {
            preface_left: PREFACE_LEN,
            input: Vec::new(),
            output: Vec::new(),
            pending: None,
            decoder,
            passthrough: false,
        }
    }
}

impl Rewriter {
    /// Takes bytes read from the client; complete frames become available from [`Self::take`].
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.passthrough {
            self.output.extend_from_slice(bytes);
            return;
        }
        self.input.extend_from_slice(bytes);
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.input.len());
            self.output.extend(self.input.drain(..n));
            self.preface_left -= n;
        }
        let mut at = 0;
        while self.preface_left == 0 && !self.passthrough {
            let Some(header) = self.input.get(at..at + FRAME_HEADER_LEN) else {
                break;
            };
            let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let end = at + FRAME_HEADER_LEN + len;
            if end > self.input.len() {
                break;
            }
            let frame = self.input[at..end].to_vec();
            self.frame(&frame);
            at = end;
        }
        self.input.drain(..at);
        if self.passthrough {
            let rest = std::mem::take(&mut self.input);
            self.output.extend_from_slice(&rest);
        }
    }

    /// Bytes ready for the server.
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.output.len());
        self.output.drain(..n).collect()
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    fn frame(&mut self, frame: &[u8]) {
        let kind = frame[3];
        let flags = frame[4];
        let stream = [frame[5], frame[6], frame[7], frame[8]];
        let payload = &frame[FRAME_HEADER_LEN..];
        match (kind, self.pending.take()) {
            (TYPE_HEADERS, None) => {
                let Some((priority, fragment)) = headers_payload(flags, payload) else {
                    return self.give_up(frame);
                };
                let pending = Pending {
                    stream,
                    flags,
                    priority,
                    block: fragment.to_vec(),
                    raw: frame.to_vec(),
                };
                self.continue_or_finish(pending, flags);
            }
            (TYPE_CONTINUATION, Some(mut pending)) if pending.stream == stream => {
                pending.block.extend_from_slice(payload);
                pending.raw.extend_from_slice(frame);
                if pending.block.len() > MAX_BLOCK {
                    let raw = std::mem::take(&mut pending.raw);
                    return self.give_up(&raw);
                }
                self.continue_or_finish(pending, flags);
            }
            (_, None) => self.output.extend_from_slice(frame),
            // Anything else between HEADERS and its last CONTINUATION is a protocol error.
            (_, Some(pending)) => {
                let mut raw = pending.raw;
                raw.extend_from_slice(frame);
                self.give_up(&raw);
            }
        }
    }

    fn continue_or_finish(&mut self, pending: Pending, flags: u8) {
        if flags & FLAG_END_HEADERS == 0 {
            self.pending = Some(pending);
            return;
        }
        match self.reencode(&pending.block) {
            Some(block) => self.write_headers(&pending, &block),
            None => self.give_up(&pending.raw),
        }
    }

    /// The block decoded and written again as literals without indexing, with `:authority`
    /// made valid; `None` when it does not decode.
    fn reencode(&mut self, block: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() * 2);
        self.decoder
            .decode_with_cb(block, |name, value| {
                let value: &[u8] = if &*name == b":authority" && !is_valid_authority(&value) {
                    LOCALHOST
                } else {
                    &value
                };
                // Literal header field without indexing, new name (RFC 7541 §6.2.2).
                out.push(0x00);
                write_string(&mut out, &name);
                write_string(&mut out, value);
            })
            .ok()?;
        Some(out)
    }

    fn write_headers(&mut self, pending: &Pending, block: &[u8]) {
        let mut first = Vec::with_capacity(5 + MAX_FRAME_PAYLOAD);
        if let Some(priority) = pending.priority {
            first.extend_from_slice(&priority);
        }
        let room = MAX_FRAME_PAYLOAD - first.len();
        let (head, mut rest) = block.split_at(room.min(block.len()));
        first.extend_from_slice(head);
        let mut flags = pending.flags & (FLAG_END_STREAM | FLAG_PRIORITY);
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        write_frame(&mut self.output, TYPE_HEADERS, flags, pending.stream, &first);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(MAX_FRAME_PAYLOAD.min(rest.len()));
            let flags = if after.is_empty() { FLAG_END_HEADERS } else { 0 };
            write_frame(&mut self.output, TYPE_CONTINUATION, flags, pending.stream, chunk);
            rest = after;
        }
    }

    fn give_up(&mut self, raw: &[u8]) {
        self.output.extend_from_slice(raw);
        self.passthrough = true;
    }
}

/// A HEADERS payload's priority fields and header block fragment, padding removed.
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut body = payload;
    if flags & FLAG_PADDED != 0 {
        let (&pad, rest) = body.split_first()?;
        body = rest.get(..rest.len().checked_sub(usize::from(pad))?)?;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let fields = body.get(..5)?;
        priority = Some([fields[0], fields[1], fields[2], fields[3], fields[4]]);
        body = &body[5..];
    }
    Some((priority, body))
}

fn is_valid_authority(value: &[u8]) -> bool {
    hyper::http::uri::Authority::try_from(value).is_ok()
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.2).
fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    write_integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// An HPACK integer with a `bits`-bit prefix (RFC 7541 §5.1).
fn write_integer(out: &mut Vec<u8>, first: u8, bits: u32, mut value: usize) {
    let max = (1usize << bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: [u8; 4], payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream);
    out.extend_from_slice(payload);
}

/// A connection whose reads pass through a [`Rewriter`]; writes go straight through.
pub struct Normalized<S> {
    inner: S,
    rewriter: Rewriter,
    eof: bool,
}

impl<S> Normalized<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Normalized<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.rewriter.has_output() {
                let bytes = this.rewriter.take(buf.remaining());
                buf.put_slice(&bytes);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
            } else {
                this.rewriter.feed(read.filled());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Normalized<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Normalized<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// A request header block the way gRPC's C core writes one for a Unix socket: `:authority`
    /// is indexed into the dynamic table on the first call and referred to by index afterwards.
    fn block(authority: &[u8], first: bool) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(0x83); // :method POST (static 3)
        out.push(0x86); // :scheme http (static 6)
        out.push(0x04); // :path, literal without indexing, static name 4
        write_string(&mut out, b"/grpc.health.v1.Health/Check");
        if first {
            out.push(0x41); // :authority, literal with incremental indexing, static name 1
            write_string(&mut out, authority);
        } else {
            out.push(0xbe); // dynamic entry 62: the authority indexed above
        }
        out.push(0x00);
        write_string(&mut out, b"content-type");
        write_string(&mut out, b"application/grpc");
        out
    }

    fn headers_frame(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, TYPE_HEADERS, flags, stream.to_be_bytes(), payload);
        out
    }

    /// Decodes every HEADERS frame (with CONTINUATIONs) in `bytes` after the preface.
    fn decoded(bytes: &[u8]) -> Vec<Vec<(String, String)>> {
        assert_eq!(&bytes[..PREFACE_LEN], PREFACE);
        let mut decoder = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        let mut at = PREFACE_LEN;
        while at < bytes.len() {
            let len =
                usize::from(bytes[at]) << 16 | usize::from(bytes[at + 1]) << 8 | usize::from(bytes[at + 2]);
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            let payload = &bytes[at + 9..at + 9 + len];
            if kind == TYPE_HEADERS || kind == TYPE_CONTINUATION {
                let (_, fragment) = if kind == TYPE_HEADERS {
                    headers_payload(flags, payload).expect("payload")
                } else {
                    (None, payload)
                };
                block.extend_from_slice(fragment);
                if flags & FLAG_END_HEADERS != 0 {
                    let fields = decoder.decode(&block).expect("valid HPACK");
                    blocks.push(
                        fields
                            .into_iter()
                            .map(|(n, v)| {
                                (
                                    String::from_utf8_lossy(&n).into_owned(),
                                    String::from_utf8_lossy(&v).into_owned(),
                                )
                            })
                            .collect(),
                    );
                    block.clear();
                }
            }
            at += 9 + len;
        }
        blocks
    }

    fn authority(fields: &[(String, String)]) -> &str {
        &fields
            .iter()
            .find(|(n, _)| n == ":authority")
            .expect("authority")
            .1
    }

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut rewriter = Rewriter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            rewriter.feed(chunk);
            out.extend(rewriter.take(usize::MAX));
        }
        out
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_in_every_call_of_the_connection() {
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(
            1,
            FLAG_END_HEADERS,
            &block(b"tmp%2Fgraspd.sock", true),
        ));
        let data = [0, 0, 5, 0, 0x1, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        input.extend_from_slice(&data);
        input.extend(headers_frame(3, FLAG_END_HEADERS, &block(b"", false)));
        let out = run(&[&input]);
        let blocks = decoded(&out);
        assert_eq!(blocks.len(), 2);
        for fields in &blocks {
            assert_eq!(authority(fields), "localhost");
            assert_eq!(fields[0], (":method".into(), "POST".into()));
            assert!(fields.contains(&(":path".into(), "/grpc.health.v1.Health/Check".into())));
        }
        assert!(
            out.windows(data.len()).any(|w| w == data),
            "DATA frame passed on unchanged"
        );
    }

    #[test]
    fn a_valid_authority_is_kept_and_bytes_may_arrive_one_at_a_time() {
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(
            1,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            &block(b"localhost:50051", true),
        ));
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let out = run(&chunks);
        let blocks = decoded(&out);
        assert_eq!(authority(&blocks[0]), "localhost:50051");
        let flags = out[PREFACE_LEN + 4];
        assert_eq!(flags & FLAG_END_STREAM, FLAG_END_STREAM, "END_STREAM kept");
    }

    #[test]
    fn padding_priority_and_continuation_frames_are_understood() {
        let whole = block(b"tmp%2Fx.sock", true);
        let (a, b) = whole.split_at(10);
        let mut payload = vec![3u8]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 0, 15]); // priority: exclusive, weight
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, FLAG_PADDED | FLAG_PRIORITY, &payload));
        write_frame(
            &mut input,
            TYPE_CONTINUATION,
            FLAG_END_HEADERS,
            1u32.to_be_bytes(),
            b,
        );
        let out = run(&[&input]);
        assert_eq!(authority(&decoded(&out)[0]), "localhost");
        let flags = out[PREFACE_LEN + 4];
        assert_eq!(flags & FLAG_PRIORITY, FLAG_PRIORITY);
        assert_eq!(&out[PREFACE_LEN + 9..PREFACE_LEN + 14], &[0x80, 0, 0, 0, 15]);
    }

    #[test]
    fn a_large_block_is_split_into_frames_every_peer_accepts() {
        let mut big = block(b"tmp%2Fx.sock", true);
        big.push(0x00);
        write_string(&mut big, b"x-large");
        write_string(&mut big, &vec![b'a'; 40_000]);
        let mut input = PREFACE.to_vec();
        // A client may send it in one frame if the server allowed larger frames.
        input.extend(headers_frame(1, FLAG_END_HEADERS, &big));
        let out = run(&[&input]);
        let blocks = decoded(&out);
        assert_eq!(authority(&blocks[0]), "localhost");
        assert!(blocks[0].iter().any(|(n, v)| n == "x-large" && v.len() == 40_000));
        let mut at = PREFACE_LEN;
        while at < out.len() {
            let len = usize::from(out[at]) << 16 | usize::from(out[at + 1]) << 8 | usize::from(out[at + 2]);
            assert!(len <= MAX_FRAME_PAYLOAD);
            at += 9 + len;
        }
    }

    #[test]
    fn garbage_is_passed_on_for_the_server_to_refuse() {
        let mut input = PREFACE.to_vec();
        // An HPACK index that does not exist.
        input.extend(headers_frame(1, FLAG_END_HEADERS, &[0xff, 0xff, 0xff, 0x0f]));
        input.extend_from_slice(b"more bytes");
        let out = run(&[&input]);
        assert_eq!(out, input);
    }
}

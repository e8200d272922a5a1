//! What the fast hook says and reads, with no allocation and no operating system: git's hook
//! input, the repository's git config, protobuf for `HookService`, HTTP/2 frames and HPACK.
//!
//! Everything here is deliberately partial. It covers what git and graspd actually send; anything
//! else is [`Unsure`], and the hook then hands the whole run to the full `grasp-hook`, which
//! understands (or words an error for) every case. Being partial is safe; being wrong is not, so
//! nothing here guesses.
//!
//! Compiled into the no_std fast hook and, for its unit tests, into the std `grasp-hook`.

use crate::huffman;

/// This input is outside what the fast path handles: let the full hook do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsure;

pub type Sure<T> = Result<T, Unsure>;

/// Appends bytes to a fixed buffer.
pub struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Out<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn put(&mut self, bytes: &[u8]) -> Sure<()> {
        let end = self.len.checked_add(bytes.len()).ok_or(Unsure)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(Unsure)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    pub fn byte(&mut self, byte: u8) -> Sure<()> {
        self.put(&[byte])
    }

    /// Overwrites bytes already written (a length known only afterwards).
    pub fn patch(&mut self, at: usize, bytes: &[u8]) -> Sure<()> {
        let end = at.checked_add(bytes.len()).ok_or(Unsure)?;
        if end > self.len {
            return Err(Unsure);
        }
        self.buf[at..end].copy_from_slice(bytes);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// git's hook input

/// One `<old> <new> <ref>` line, borrowed from the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Update<'a> {
    pub old: &'a [u8],
    pub new: &'a [u8],
    pub name: &'a [u8],
}

fn is_oid(text: &[u8]) -> bool {
    crate::rules::object_id_problem(text).is_none()
}

/// A ref name git accepts, in ASCII: a subset of what the full hook accepts, so a line this
/// refuses is one the full hook judges (and words).
fn is_plain_ref(name: &[u8]) -> bool {
    name.is_ascii() && crate::rules::ref_name_problem(name).is_none()
}

/// Parses git's hook input into `slots`; returns how many lines there were.
pub fn parse_updates<'a>(input: &'a [u8], slots: &mut [Update<'a>]) -> Sure<usize> {
    let body = input.strip_suffix(b"\n").ok_or(Unsure)?;
    let mut count = 0;
    for line in body.split(|b| *b == b'\n') {
        let mut fields = line.split(|b| *b == b' ');
        let (Some(old), Some(new), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(Unsure);
        };
        if !is_oid(old) || !is_oid(new) || old.len() != new.len() || !is_plain_ref(name) {
            return Err(Unsure);
        }
        *slots.get_mut(count).ok_or(Unsure)? = Update { old, new, name };
        count += 1;
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------------
// protobuf (grasp.v1 HookService messages)

fn varint(out: &mut Out, mut value: u64) -> Sure<()> {
    while value >= 0x80 {
        out.byte(value as u8 | 0x80)?;
        value >>= 7;
    }
    out.byte(value as u8)
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

fn bytes_field(out: &mut Out, field: u8, bytes: &[u8]) -> Sure<()> {
    out.byte(field << 3 | 2)?;
    varint(out, bytes.len() as u64)?;
    out.put(bytes)
}

/// `AuthorizePushRequest` and `ReportPushRequest` share one shape:
/// `{ repo_path = 1; repeated RefUpdate updates = 2 { old_oid = 1; new_oid = 2; ref_name = 3 } }`.
pub fn push_request(out: &mut Out, repo_path: &[u8], updates: &[Update]) -> Sure<()> {
    if !repo_path.is_empty() {
        bytes_field(out, 1, repo_path)?;
    }
    for update in updates {
        let inner = field_len(update.old.len()) + field_len(update.new.len()) + field_len(update.name.len());
        out.byte(2 << 3 | 2)?;
        varint(out, inner as u64)?;
        bytes_field(out, 1, update.old)?;
        bytes_field(out, 2, update.new)?;
        bytes_field(out, 3, update.name)?;
    }
    Ok(())
}

/// `AuthorizePushRequest`'s fields beyond that shape: `{ quarantine_path = 3; client_address = 4 }`
/// (each left out when empty).
pub fn push_origin(out: &mut Out, quarantine_path: &[u8], client_address: &[u8]) -> Sure<()> {
    for (field, value) in [(3, quarantine_path), (4, client_address)] {
        if !value.is_empty() {
            bytes_field(out, field, value)?;
        }
    }
    Ok(())
}

/// One field of a protobuf message.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn read_varint(input: &mut &[u8]) -> Sure<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or(Unsure)?;
        *input = rest;
        // The tenth byte holds the 64th bit only; more would overflow (prost refuses it too).
        if shift == 63 && byte > 1 {
            return Err(Unsure);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Unsure)
}

/// Calls `f` with each field of `message`, in order.
fn fields<'a>(mut message: &'a [u8], mut f: impl FnMut(u64, Value<'a>) -> Sure<()>) -> Sure<()> {
    while !message.is_empty() {
        let key = read_varint(&mut message)?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut message)?),
            1 | 5 => {
                let size = if key & 7 == 1 { 8 } else { 4 };
                message = message.get(size..).ok_or(Unsure)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(read_varint(&mut message)?).map_err(|_| Unsure)?;
                let bytes = message.get(..len).ok_or(Unsure)?;
                message = &message[len..];
                Value::Bytes(bytes)
            }
            _ => return Err(Unsure),
        };
        // Field numbers are 1 to 2^29 - 1; anything else is no protobuf.
        let number = key >> 3;
        if number == 0 || number >= 1 << 29 {
            return Err(Unsure);
        }
        f(number, value)?;
    }
    Ok(())
}

fn text(bytes: &[u8]) -> Sure<&str> {
    core::str::from_utf8(bytes).map_err(|_| Unsure)
}

/// `AuthorizePushResponse { bool allowed = 1; repeated RefVerdict verdicts = 2 }` with
/// `RefVerdict { ref_name = 1; allowed = 2; message = 3 }`: calls `say` with each non-empty
/// verdict message, in order, and returns `allowed`. Everything is checked before anything is said.
pub fn authorize_response(message: &[u8], mut say: impl FnMut(&str)) -> Sure<bool> {
    let mut allowed = false;
    // A field given twice counts once, the last time (protobuf's rule for singular fields).
    let check = |verdict: &[u8], say: &mut dyn FnMut(&str)| {
        let mut message = "";
        fields(verdict, |number, value| match (number, value) {
            (1, Value::Bytes(bytes)) => text(bytes).map(drop),
            (3, Value::Bytes(bytes)) => {
                message = text(bytes)?;
                Ok(())
            }
            (1 | 3, _) => Err(Unsure),
            (2, Value::Varint(_)) => Ok(()),
            (2, _) => Err(Unsure),
            _ => Ok(()),
        })?;
        if !message.is_empty() {
            say(message);
        }
        Ok(())
    };
    fields(message, |number, value| match (number, value) {
        (1, Value::Varint(v)) => {
            allowed = v != 0;
            Ok(())
        }
        (2, Value::Bytes(verdict)) => check(verdict, &mut |_| {}),
        (1 | 2, _) => Err(Unsure),
        _ => Ok(()),
    })?;
    fields(message, |number, value| match (number, value) {
        (2, Value::Bytes(verdict)) => check(verdict, &mut say),
        _ => Ok(()),
    })?;
    Ok(allowed)
}

/// `ReportPushResponse { ProcessResult result = 1; repeated string messages = 2 }`: calls `say`
/// with each non-empty message, in order, after checking them all.
pub fn report_response(message: &[u8], mut say: impl FnMut(&str)) -> Sure<()> {
    fields(message, |number, value| match (number, value) {
        (1, Value::Bytes(_)) => Ok(()),
        (2, Value::Bytes(bytes)) => text(bytes).map(drop),
        (1 | 2, _) => Err(Unsure),
        _ => Ok(()),
    })?;
    fields(message, |number, value| {
        if let (2, Value::Bytes(bytes)) = (number, value) {
            let line = text(bytes)?;
            if !line.is_empty() {
                say(line);
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 (RFC 9113)

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

/// The stream the hook's one call uses.
pub const STREAM: u32 = 1;

/// Largest window HTTP/2 allows; the hook announces it so the answer never waits for a
/// WINDOW_UPDATE.
const MAX_WINDOW: u32 = 0x7fff_ffff;

/// The default window a peer may fill before the hook hears from it: the most a request may
/// carry in its DATA without flow control, which the fast path does not do.
pub const INITIAL_WINDOW: usize = 65_535;

/// Largest frame payload either side may send without a SETTINGS change.
pub const MAX_FRAME: usize = 16_384;

pub fn frame_head(out: &mut Out, len: usize, kind: u8, flags: u8, stream: u32) -> Sure<()> {
    if len >= 1 << 24 {
        return Err(Unsure);
    }
    let len = len as u32;
    out.put(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags])?;
    out.put(&stream.to_be_bytes())
}

/// A header field as a literal without indexing, its name from the static table (`index` < 15)
/// or spelled out (`index` 0). Strings go raw: HPACK's Huffman coding is optional for senders.
fn literal(out: &mut Out, index: u8, name: &[u8], value: &[u8]) -> Sure<()> {
    if index >= 15 {
        return Err(Unsure);
    }
    out.byte(index)?;
    if index == 0 {
        string(out, name)?;
    }
    string(out, value)
}

fn string(out: &mut Out, bytes: &[u8]) -> Sure<()> {
    prefixed_int(out, 0, 7, bytes.len())?;
    out.put(bytes)
}

fn prefixed_int(out: &mut Out, first: u8, bits: u32, mut value: usize) -> Sure<()> {
    let max = (1usize << bits) - 1;
    if value < max {
        return out.byte(first | value as u8);
    }
    out.byte(first | max as u8)?;
    value -= max;
    while value >= 0x80 {
        out.byte(value as u8 | 0x80)?;
        value >>= 7;
    }
    out.byte(value as u8)
}

/// Everything the hook sends for one unary call of `method` with the protobuf `message`: the
/// connection preface, SETTINGS (no push, the largest window), a connection WINDOW_UPDATE, then
/// HEADERS and the gRPC-framed message as DATA ending the stream. The whole request must fit
/// in the peer's initial window (the fast path does no flow control).
pub fn call(out: &mut Out, method: &[u8], message: &[u8]) -> Sure<()> {
    if message.len() + 5 > INITIAL_WINDOW {
        return Err(Unsure);
    }
    out.put(PREFACE)?;
    frame_head(out, 12, SETTINGS, 0, 0)?;
    out.put(&[0, 2, 0, 0, 0, 0])?; // ENABLE_PUSH = 0
    out.put(&[0, 4])?; // INITIAL_WINDOW_SIZE
    out.put(&MAX_WINDOW.to_be_bytes())?;
    frame_head(out, 4, 0x8, 0, 0)?; // WINDOW_UPDATE for the connection
    out.put(&(MAX_WINDOW - INITIAL_WINDOW as u32).to_be_bytes())?;

    let head_at = out.len();
    frame_head(out, 0, HEADERS, END_HEADERS, STREAM)?;
    let block_at = out.len();
    out.byte(0x80 | 3)?; // :method POST
    out.byte(0x80 | 6)?; // :scheme http
    let mut path = [0u8; 64];
    let mut path_out = Out::new(&mut path);
    path_out.put(b"/grasp.v1.HookService/")?;
    path_out.put(method)?;
    literal(out, 4, b"", path_out.bytes())?; // :path
    literal(out, 1, b"", b"localhost")?; // :authority
    literal(out, 0, b"content-type", b"application/grpc")?;
    literal(out, 0, b"te", b"trailers")?;
    literal(out, 0, b"user-agent", b"grasp-hook")?;
    let block = out.len() - block_at;
    if block > MAX_FRAME {
        return Err(Unsure);
    }
    let mut head = [0u8; 9];
    let mut head_out = Out::new(&mut head);
    frame_head(&mut head_out, block, HEADERS, END_HEADERS, STREAM)?;
    out.patch(head_at, head_out.bytes())?;

    // gRPC's length-prefixed message, cut into frames; the last one ends the stream.
    let mut grpc_prefix = [0u8; 5];
    grpc_prefix[1..].copy_from_slice(&(message.len() as u32).to_be_bytes());
    let total = 5 + message.len();
    let mut sent = 0;
    while sent < total {
        let len = (total - sent).min(MAX_FRAME);
        let flags = if sent + len == total { END_STREAM } else { 0 };
        frame_head(out, len, DATA, flags, STREAM)?;
        for at in sent..sent + len {
            out.byte(if at < 5 { grpc_prefix[at] } else { message[at - 5] })?;
        }
        sent += len;
    }
    Ok(())
}

/// One frame from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: &'a [u8],
}

/// The first whole frame in `input` and its size in bytes, or `None` when more bytes are needed.
pub fn next_frame(input: &[u8]) -> Sure<Option<(Frame<'_>, usize)>> {
    let Some(head) = input.get(..9) else {
        return Ok(None);
    };
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    if len > MAX_FRAME {
        return Err(Unsure);
    }
    let Some(payload) = input.get(9..9 + len) else {
        return Ok(None);
    };
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Ok(Some((
        Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        },
        9 + len,
    )))
}

/// The payload of a DATA or HEADERS frame without its padding (and, for HEADERS, the priority
/// fields).
pub fn content<'a>(frame: &Frame<'a>) -> Sure<&'a [u8]> {
    let mut payload = frame.payload;
    let mut pad = 0;
    if frame.flags & PADDED != 0 {
        let (&len, rest) = payload.split_first().ok_or(Unsure)?;
        pad = usize::from(len);
        payload = rest;
    }
    if frame.kind == HEADERS && frame.flags & PRIORITY != 0 {
        payload = payload.get(5..).ok_or(Unsure)?;
    }
    payload
        .get(..payload.len().checked_sub(pad).ok_or(Unsure)?)
        .ok_or(Unsure)
}

// ---------------------------------------------------------------------------------------------
// A call's answer, frame by frame

/// The buffers a call's answer goes through.
pub struct Io<'a> {
    /// A header block awaiting its CONTINUATION frames.
    pub block: &'a mut [u8],
    /// HPACK's room for decoded strings.
    pub scratch: &'a mut [u8],
    /// The call's DATA.
    pub answer: &'a mut [u8],
}

/// Where a call on [`STREAM`] stands while the daemon's frames arrive.
#[derive(Default)]
pub struct Call {
    /// The connection's HPACK table.
    table: Table,
    /// `:status` was 200.
    http_ok: bool,
    /// `grpc-status` was 0; `None` until seen.
    grpc_ok: Option<bool>,
    /// Bytes of DATA received.
    answer_len: usize,
    /// Bytes of a header block awaiting its CONTINUATION frames.
    block_len: usize,
    /// A header block awaits its CONTINUATION frames.
    collecting: bool,
    /// The header block being collected ends the stream.
    block_ends_stream: bool,
    /// Saw END_STREAM on the call's stream.
    ended: bool,
}

impl Call {
    /// The call's stream has ended: nothing after this frame is read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes one frame; returns the length of a reply to send from `reply` (0: none).
    pub fn on_frame(&mut self, frame: &Frame, io: &mut Io, reply: &mut [u8; 17]) -> Sure<usize> {
        let ours = frame.stream == STREAM;
        // RFC 9113 §6.10: nothing comes between a header block's frames but its CONTINUATION.
        if self.collecting != (ours && frame.kind == CONTINUATION) {
            return Err(Unsure);
        }
        match frame.kind {
            SETTINGS if frame.flags & ACK == 0 => {
                let mut out = Out::new(reply);
                frame_head(&mut out, 0, SETTINGS, ACK, 0)?;
                Ok(out.len())
            }
            PING if frame.flags & ACK == 0 => {
                let mut out = Out::new(reply);
                frame_head(&mut out, 8, PING, ACK, 0)?;
                out.put(frame.payload.get(..8).ok_or(Unsure)?)?;
                Ok(out.len())
            }
            // A GOAWAY that still covers the call (last stream id >= 1) lets it finish.
            GOAWAY
                if frame.payload.get(..4).is_some_and(|id| {
                    u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff >= STREAM
                }) =>
            {
                Ok(0)
            }
            GOAWAY | PUSH_PROMISE => Err(Unsure),
            RST_STREAM if ours => Err(Unsure),
            // A header block on another stream would change the HPACK table unseen.
            HEADERS | CONTINUATION if !ours => Err(Unsure),
            HEADERS => {
                self.block_ends_stream = frame.flags & END_STREAM != 0;
                self.collect_block(content(frame)?, frame.flags, io)?;
                Ok(0)
            }
            CONTINUATION => {
                self.collect_block(frame.payload, frame.flags, io)?;
                Ok(0)
            }
            DATA if ours => {
                let data = content(frame)?;
                let end = self.answer_len + data.len();
                io.answer
                    .get_mut(self.answer_len..end)
                    .ok_or(Unsure)?
                    .copy_from_slice(data);
                self.answer_len = end;
                if frame.flags & END_STREAM != 0 {
                    self.ended = true;
                }
                Ok(0)
            }
            _ => Ok(0),
        }
    }

    /// Adds a HEADERS or CONTINUATION payload to the header block; decodes it when complete.
    fn collect_block(&mut self, fragment: &[u8], flags: u8, io: &mut Io) -> Sure<()> {
        let end = self.block_len + fragment.len();
        io.block
            .get_mut(self.block_len..end)
            .ok_or(Unsure)?
            .copy_from_slice(fragment);
        self.block_len = end;
        self.collecting = flags & END_HEADERS == 0;
        if self.collecting {
            return Ok(());
        }
        let whole = &io.block[..self.block_len];
        self.block_len = 0;
        let (mut status, mut grpc) = (None, None);
        self.table.decode(whole, io.scratch, |name, value| match name {
            b":status" => status = Some(value == b"200"),
            b"grpc-status" => grpc = Some(value == b"0"),
            _ => {}
        })?;
        if let Some(ok) = status {
            self.http_ok = ok;
        }
        if grpc.is_some() {
            self.grpc_ok = grpc;
        }
        if self.block_ends_stream {
            self.ended = true;
        }
        Ok(())
    }

    /// The gRPC message of a call that ended well (`:status` 200, `grpc-status` 0): exactly one
    /// uncompressed length-prefixed message in `answer`, the buffer [`Io::answer`] was.
    pub fn message<'a>(&self, answer: &'a [u8]) -> Sure<&'a [u8]> {
        if !self.ended || !self.http_ok || self.grpc_ok != Some(true) {
            return Err(Unsure);
        }
        let answer = answer.get(..self.answer_len).ok_or(Unsure)?;
        let (&[0, a, b, c, d], message) = answer.split_first_chunk::<5>().ok_or(Unsure)? else {
            return Err(Unsure);
        };
        if u32::from_be_bytes([a, b, c, d]) as usize != message.len() {
            return Err(Unsure);
        }
        Ok(message)
    }
}

// ---------------------------------------------------------------------------------------------
// HPACK (RFC 7541), decoding only

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The dynamic table's size when the hook says nothing about it (SETTINGS_HEADER_TABLE_SIZE).
pub const TABLE_SIZE: usize = 4096;
/// Each entry counts its name, its value and 32 bytes (RFC 7541 §4.1); so at most this many.
const MAX_ENTRIES: usize = TABLE_SIZE / 32;

/// The decoder's dynamic table: entries oldest first, their bytes packed in the same order.
pub struct Table {
    bytes: [u8; TABLE_SIZE],
    /// (name length, value length) of each entry, oldest first.
    entries: [(u16, u16); MAX_ENTRIES],
    count: usize,
    used_bytes: usize,
    size: usize,
    max_size: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    pub const fn new() -> Self {
        Table {
            bytes: [0; TABLE_SIZE],
            entries: [(0, 0); MAX_ENTRIES],
            count: 0,
            used_bytes: 0,
            size: 0,
            max_size: TABLE_SIZE,
        }
    }

    fn evict_oldest(&mut self) {
        let (name, value) = self.entries[0];
        let gone = usize::from(name) + usize::from(value);
        self.bytes.copy_within(gone..self.used_bytes, 0);
        self.used_bytes -= gone;
        self.entries.copy_within(1..self.count, 0);
        self.count -= 1;
        self.size -= gone + 32;
    }

    fn resize(&mut self, max_size: usize) -> Sure<()> {
        if max_size > TABLE_SIZE {
            return Err(Unsure);
        }
        self.max_size = max_size;
        while self.size > self.max_size {
            self.evict_oldest();
        }
        Ok(())
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let needed = name.len() + value.len() + 32;
        if needed > self.max_size {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            while self.count > 0 {
                self.evict_oldest();
            }
            return;
        }
        while self.size + needed > self.max_size {
            self.evict_oldest();
        }
        let at = self.used_bytes;
        self.bytes[at..at + name.len()].copy_from_slice(name);
        self.bytes[at + name.len()..at + name.len() + value.len()].copy_from_slice(value);
        self.used_bytes += name.len() + value.len();
        self.entries[self.count] = (name.len() as u16, value.len() as u16);
        self.count += 1;
        self.size += needed;
    }

    /// Entry `index` of the combined address space (1-based; 62 is the newest dynamic entry).
    fn get(&self, index: usize) -> Sure<(&[u8], &[u8])> {
        if index == 0 {
            return Err(Unsure);
        }
        if index <= STATIC_TABLE.len() {
            return Ok(STATIC_TABLE[index - 1]);
        }
        let newest_first = index - STATIC_TABLE.len() - 1;
        if newest_first >= self.count {
            return Err(Unsure);
        }
        let position = self.count - 1 - newest_first;
        let start: usize = self.entries[..position]
            .iter()
            .map(|(n, v)| usize::from(*n) + usize::from(*v))
            .sum();
        let (name, value) = self.entries[position];
        let name_end = start + usize::from(name);
        Ok((
            &self.bytes[start..name_end],
            &self.bytes[name_end..name_end + usize::from(value)],
        ))
    }

    /// Decodes one header block, calling `field` with each (name, value). `scratch` holds
    /// decoded strings, a name in its first half and a value in its second; a string that
    /// decodes to more than half of it (Huffman text grows by up to 8/5) is [`Unsure`].
    pub fn decode(
        &mut self,
        mut block: &[u8],
        scratch: &mut [u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Sure<()> {
        // RFC 7541 §4.2: table size updates come first in a block, and a field follows them.
        let (mut fields_seen, mut last_was_size_update) = (false, false);
        while let Some(&first) = block.first() {
            if first & 0x20 == 0x20 && first & 0xc0 == 0 {
                if fields_seen {
                    return Err(Unsure);
                }
                let size = read_int(&mut block, 5)?;
                self.resize(size)?;
                last_was_size_update = true;
                continue;
            }
            (fields_seen, last_was_size_update) = (true, false);
            if first & 0x80 != 0 {
                let index = read_int(&mut block, 7)?;
                let (name, value) = self.get(index)?;
                field(name, value);
            } else {
                let (bits, indexed) = if first & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let name_index = read_int(&mut block, bits)?;
                let (name_area, value_area) = scratch.split_at_mut(scratch.len() / 2);
                let name: &[u8] = if name_index == 0 {
                    read_string(&mut block, name_area)?
                } else {
                    let (name, _) = self.get(name_index)?;
                    let n = name.len();
                    let copy = name_area.get_mut(..n).ok_or(Unsure)?;
                    copy.copy_from_slice(name);
                    copy
                };
                let value = read_string(&mut block, value_area)?;
                field(name, value);
                if indexed {
                    self.insert(name, value);
                }
            }
        }
        if last_was_size_update {
            return Err(Unsure);
        }
        Ok(())
    }
}

/// An HPACK integer with an `bits`-bit prefix (RFC 7541 §5.1).
fn read_int(input: &mut &[u8], bits: u32) -> Sure<usize> {
    let (&first, rest) = input.split_first().ok_or(Unsure)?;
    *input = rest;
    let max = (1usize << bits) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    for shift in (0..28).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or(Unsure)?;
        *input = rest;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Unsure)
}

/// An HPACK string literal (RFC 7541 §5.2), decoded into `area` when Huffman-coded.
fn read_string<'s>(input: &mut &[u8], area: &'s mut [u8]) -> Sure<&'s [u8]> {
    let huffman_coded = input.first().ok_or(Unsure)? & 0x80 != 0;
    let len = read_int(input, 7)?;
    let raw = input.get(..len).ok_or(Unsure)?;
    *input = &input[len..];
    if !huffman_coded {
        let out = area.get_mut(..len).ok_or(Unsure)?;
        out.copy_from_slice(raw);
        return Ok(out);
    }
    huffman::decode(raw, area)
}

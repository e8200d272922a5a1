//! Randomized tests of the fast hook's readers (hook/fast/wire.rs, hook/fast/huffman.rs), each
//! against an oracle: prost for protobuf, loona-hpack for HPACK (and so Huffman), the full hook's
//! parser for git's hook input, the frame layout itself for HTTP/2 frames, and a reference
//! HTTP/2 + gRPC reader for a whole answer on the connection.
//!
//! The fast hook answers "push allowed" only from [`wire::authorize_response`], so the property
//! that matters most is soundness: whatever bytes arrive, the fast path may be *unsure* (the full
//! hook then takes over) but must never read something other than what the reference reads. Inputs
//! are random bytes and random mutations of valid encodings, from a seeded xorshift generator (no
//! dependency, stable toolchain). `GRASP_FUZZ_CASES` sets the cases per target (default 20,000,
//! seconds in all); `GRASP_FUZZ_SEED` replays a run. A failure names its seed and case.

use grasp_proto::v1::{AuthorizePushResponse, ProcessResult, RefVerdict, ReportPushResponse};
use prost::Message;

use crate::wire::{self, Table, Unsure, Update};

/// xorshift64*: small, fast, and good enough to reach odd corners.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, in_n: usize) -> bool {
        self.below(in_n) == 0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A few random edits: flip, insert, delete, truncate, duplicate a slice.
    fn mutate(&mut self, mut input: Vec<u8>) -> Vec<u8> {
        for _ in 0..=self.below(3) {
            let len = input.len();
            match self.below(5) {
                0 if len > 0 => {
                    let at = self.below(len);
                    input[at] ^= 1 << self.below(8);
                }
                1 => {
                    let at = self.below(len + 1);
                    input.insert(at, self.next() as u8);
                }
                2 if len > 0 => {
                    input.remove(self.below(len));
                }
                3 => input.truncate(self.below(len + 1)),
                _ if len > 0 => {
                    let (a, b) = (self.below(len), self.below(len));
                    let slice = input[a.min(b)..a.max(b)].to_vec();
                    let at = self.below(len + 1);
                    input.splice(at..at, slice);
                }
                _ => {}
            }
        }
        input
    }
}

/// Cases per target and the seed, from the environment.
fn plan(target: &str) -> (usize, u64) {
    let cases = std::env::var("GRASP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed = std::env::var("GRASP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        });
    (cases, seed)
}

fn text(rng: &mut Rng) -> String {
    let pieces = [
        "",
        "ok",
        "ref refs/heads/main: state wants abc",
        "é",
        "graspd: push refused",
        "\u{1f600}",
    ];
    let mut out = String::new();
    for _ in 0..rng.below(3) {
        out.push_str(pieces[rng.below(pieces.len())]);
    }
    out
}

fn authorize_answer(rng: &mut Rng) -> AuthorizePushResponse {
    AuthorizePushResponse {
        allowed: rng.chance(2),
        verdicts: (0..rng.below(4))
            .map(|_| RefVerdict {
                ref_name: text(rng),
                allowed: rng.chance(2),
                message: text(rng),
            })
            .collect(),
    }
}

/// What prost reads of an AuthorizePush answer: allowed and the non-empty verdict messages.
fn prost_authorize(bytes: &[u8]) -> Option<(bool, Vec<String>)> {
    let answer = AuthorizePushResponse::decode(bytes).ok()?;
    let said = answer
        .verdicts
        .into_iter()
        .map(|v| v.message)
        .filter(|m| !m.is_empty())
        .collect();
    Some((answer.allowed, said))
}

fn wire_authorize(bytes: &[u8]) -> Result<(bool, Vec<String>), Unsure> {
    let mut said = Vec::new();
    let allowed = wire::authorize_response(bytes, |line| said.push(line.to_owned()))?;
    Ok((allowed, said))
}

#[test]
fn the_authorize_answer_is_allowed_only_when_prost_reads_it_allowed() {
    let (cases, seed) = plan("authorize");
    let mut rng = Rng::new(seed);
    let (mut sure, mut allowed) = (0, 0);
    for case in 0..cases {
        let valid = authorize_answer(&mut rng).encode_to_vec();
        let input = match rng.below(4) {
            0 => rng.bytes(48),
            1 => valid.clone(),
            _ => rng.mutate(valid.clone()),
        };
        let ours = wire_authorize(&input);
        if input == valid {
            assert_eq!(
                ours.clone().ok(),
                prost_authorize(&input),
                "seed {seed} case {case}: a valid answer read wrong"
            );
        }
        if let Ok(read) = ours {
            sure += 1;
            allowed += usize::from(read.0);
            assert_eq!(
                Some(&read),
                prost_authorize(&input).as_ref(),
                "seed {seed} case {case}: {input:?} read as {read:?}, prost disagrees"
            );
        }
    }
    // The generator must reach both answers, or the oracle tests nothing.
    assert!(
        sure > cases / 10 && allowed > cases / 20,
        "sure {sure}, allowed {allowed} of {cases}"
    );
}

#[test]
fn the_report_answer_says_what_prost_reads() {
    let (cases, seed) = plan("report");
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let valid = ReportPushResponse {
            result: rng.chance(2).then(|| ProcessResult {
                states_released: rng.below(3) as u32,
                errors: (0..rng.below(2)).map(|_| text(&mut rng)).collect(),
                ..ProcessResult::default()
            }),
            messages: (0..rng.below(4)).map(|_| text(&mut rng)).collect(),
        }
        .encode_to_vec();
        let input = if rng.chance(3) {
            rng.bytes(48)
        } else {
            rng.mutate(valid)
        };
        let mut said = Vec::new();
        if wire::report_response(&input, |line| said.push(line.to_owned())).is_ok() {
            // The fast hook skips the result (it only shows the messages), as prost skips an
            // unknown field: the reference reads the messages alone.
            let reference = ReportMessages::decode(input.as_slice())
                .unwrap_or_else(|e| panic!("seed {seed} case {case}: {input:?} read, prost: {e}"));
            let messages: Vec<String> = reference.messages.into_iter().filter(|m| !m.is_empty()).collect();
            assert_eq!(said, messages, "seed {seed} case {case}: {input:?}");
        }
    }
}

/// `ReportPushResponse` with its `result` (field 1) left unread.
#[derive(Clone, PartialEq, prost::Message)]
struct ReportMessages {
    #[prost(string, repeated, tag = "2")]
    messages: Vec<String>,
}

/// Header lists as the daemon's HTTP/2 server sends them, and then some.
fn header_list(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
    let names: [&[u8]; 6] = [
        b":status",
        b"grpc-status",
        b"content-type",
        b"grpc-message",
        b"date",
        b"x-odd",
    ];
    let values: [&[u8]; 6] = [
        b"200",
        b"0",
        b"application/grpc",
        b"",
        b"13",
        b"Sat, 29 Nov 2026 12:00:00 GMT",
    ];
    (0..rng.below(6))
        .map(|_| {
            let value = if rng.chance(4) {
                rng.bytes(12)
            } else {
                rng.pick(&values).to_vec()
            };
            (rng.pick(&names).to_vec(), value)
        })
        .collect()
}

/// RFC 7541 C.4: Huffman-coded request blocks, to mutate (the encoder above writes no Huffman).
fn huffman_blocks() -> Vec<Vec<u8>> {
    let hex = |text: &str| -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    };
    vec![
        hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
        hex("8286 84be 5886 a8eb 1064 9cbf"),
        hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
    ]
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn wire_fields(table: &mut Table, block: &[u8]) -> Result<Fields, Unsure> {
    let mut scratch = vec![0u8; 2 * 4096];
    let mut fields = Vec::new();
    table.decode(block, &mut scratch, |name, value| {
        fields.push((name.to_vec(), value.to_vec()))
    })?;
    Ok(fields)
}

#[test]
fn hpack_blocks_decode_as_the_reference_decodes_them() {
    let (cases, seed) = plan("hpack");
    let mut rng = Rng::new(seed);
    let mut sure = 0;
    for case in 0..cases {
        // Two blocks on one connection, so the dynamic table carries over.
        let mut encoder = loona_hpack::Encoder::new();
        let mut ours = Table::new();
        let mut reference = loona_hpack::Decoder::new();
        reference.set_max_allowed_table_size(wire::TABLE_SIZE);
        for _ in 0..2 {
            let list = header_list(&mut rng);
            let valid = encoder.encode(list.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
            let input = match rng.below(4) {
                0 => rng.bytes(40),
                1 => valid,
                2 => {
                    let block = huffman_blocks()[rng.below(3)].clone();
                    rng.mutate(block)
                }
                _ => rng.mutate(valid),
            };
            let read = wire_fields(&mut ours, &input);
            let expected = reference.decode(&input);
            match (read, expected) {
                (Ok(read), Ok(expected)) => {
                    sure += 1;
                    assert_eq!(read, expected, "seed {seed} case {case}: {input:?}");
                }
                (Ok(read), Err(e)) => {
                    panic!(
                        "seed {seed} case {case}: {input:?} read as {read:?}; the reference refuses it: {e:?}"
                    )
                }
                // Unsure, or the reference's error: the connection is over either way.
                (Err(Unsure), _) => break,
            }
        }
    }
    assert!(sure > cases / 4, "only {sure} blocks of {cases} cases decoded");
}

#[test]
fn frames_are_cut_exactly_where_their_header_says() {
    let (cases, seed) = plan("frames");
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let mut input = Vec::new();
        for _ in 0..rng.below(3) {
            let payload = rng.bytes(40);
            let len = payload.len();
            input.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
            input.push(*rng.pick(&[wire::DATA, wire::HEADERS, wire::SETTINGS, wire::PING, 9, 0xff]));
            input.push(rng.next() as u8);
            input.extend_from_slice(&(rng.next() as u32).to_be_bytes());
            input.extend_from_slice(&payload);
        }
        let input = if rng.chance(2) { rng.mutate(input) } else { input };
        let mut rest = input.as_slice();
        while let Ok(Some((frame, used))) = wire::next_frame(rest) {
            let declared = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            assert_eq!(used, 9 + declared, "seed {seed} case {case}");
            assert!(used <= rest.len());
            assert_eq!(frame.payload, &rest[9..used]);
            assert_eq!((frame.kind, frame.flags), (rest[3], rest[4]));
            if let Ok(content) = wire::content(&frame) {
                // Content is a slice of the payload, never beyond it.
                let start = content.as_ptr() as usize - frame.payload.as_ptr() as usize;
                assert!(
                    start + content.len() <= frame.payload.len(),
                    "seed {seed} case {case}"
                );
            }
            rest = &rest[used..];
        }
    }
}

#[test]
fn hook_input_is_read_as_the_full_hook_reads_it() {
    let (cases, seed) = plan("updates");
    let mut rng = Rng::new(seed);
    let oids = [
        "0".repeat(40),
        "a".repeat(40),
        "0123456789abcdef0123456789abcdef01234567".to_owned(),
        "b".repeat(64),
        "A".repeat(40),
        "a".repeat(39),
        "g".repeat(40),
    ];
    let names = [
        "refs/heads/main",
        "refs/nostr/abc",
        "refs/tags/v1.0",
        "refs/heads/a..b",
        "refs/heads/x.lock",
        "refs/heads/é",
        "refs/heads/ spaced",
        "HEAD",
        "refs/heads/a//b",
        "refs/heads/@{x}",
        "refs/heads/ok-1",
    ];
    let (mut sure, mut lines_read) = (0, 0);
    for case in 0..cases {
        let mut input = String::new();
        for _ in 0..=rng.below(3) {
            let old = rng.pick(&oids).clone();
            let new = if rng.chance(4) {
                rng.pick(&oids).clone()
            } else {
                old.replace('0', "1")
            };
            let separator = if rng.chance(20) { "  " } else { " " };
            input.push_str(&format!("{old}{separator}{new} {}\n", rng.pick(&names)));
        }
        let input = if rng.chance(3) {
            rng.mutate(input.into_bytes())
        } else {
            input.into_bytes()
        };
        let mut slots = [Update::default(); 8];
        let Ok(count) = wire::parse_updates(&input, &mut slots) else {
            continue;
        };
        sure += 1;
        lines_read += count;
        let full = crate::updates::read_updates(input.as_slice()).unwrap_or_else(|e| {
            panic!("seed {seed} case {case}: {input:?} read by the fast hook, refused: {e}")
        });
        let fast: Vec<(&[u8], &[u8], &[u8])> =
            slots[..count].iter().map(|u| (u.old, u.new, u.name)).collect();
        let reference: Vec<(&[u8], &[u8], &[u8])> = full
            .iter()
            .map(|u| {
                (
                    u.old.as_str().as_bytes(),
                    u.new.as_str().as_bytes(),
                    u.name.as_str().as_bytes(),
                )
            })
            .collect();
        assert_eq!(fast, reference, "seed {seed} case {case}: {input:?}");
    }
    assert!(
        sure > cases / 40 && lines_read > sure,
        "sure {sure}, lines {lines_read}"
    );
}

// ---- a whole answer on the connection: frames, header blocks, DATA, trailers

/// What a careful HTTP/2 client reads from the daemon's `bytes` for the call on stream 1: the
/// gRPC message, when the call ended well (`:status` 200, `grpc-status` 0, one uncompressed
/// length-prefixed message). Written from RFC 9113 and gRPC's wire format, with loona-hpack; it
/// decodes every stream's header blocks, so the HPACK table is the connection's.
fn reference_call(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(wire::TABLE_SIZE);
    let (mut status, mut grpc): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut data = Vec::new();
    // A header block waiting for CONTINUATION: its stream, bytes, and whether it ends the stream.
    let mut block: Option<(u32, Vec<u8>, bool)> = None;
    let mut rest = bytes;
    loop {
        let head = rest.get(..9)?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        if len > 16_384 {
            return None;
        }
        let payload = rest.get(9..9 + len)?;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        rest = &rest[9 + len..];
        let mut ends = false;
        let complete: Option<(u32, Vec<u8>, bool)> = match (&mut block, kind) {
            // RFC 9113 §6.10: only the block's CONTINUATION frames may follow it.
            (Some((on, bytes, _)), 0x9) if *on == stream => {
                bytes.extend_from_slice(payload);
                if flags & 0x4 == 0 {
                    continue;
                }
                block.take()
            }
            (Some(_), _) | (None, 0x9) => return None,
            (None, 0x0) => {
                if stream == 1 {
                    data.extend_from_slice(unpadded(payload, flags, false)?);
                    ends = flags & 0x1 != 0;
                }
                None
            }
            (None, 0x1) => {
                let fragment = unpadded(payload, flags, true)?.to_vec();
                let ends_stream = flags & 0x1 != 0;
                if flags & 0x4 == 0 {
                    block = Some((stream, fragment, ends_stream));
                    continue;
                }
                Some((stream, fragment, ends_stream))
            }
            (None, 0x3) if stream == 1 => return None,
            // Push is off (the hook's SETTINGS say so): a PUSH_PROMISE is a protocol error.
            (None, 0x5) => return None,
            (None, 0x7) => {
                let last = payload.get(..4)?;
                if u32::from_be_bytes([last[0], last[1], last[2], last[3]]) & 0x7fff_ffff < 1 {
                    return None;
                }
                None
            }
            _ => None,
        };
        if let Some((on, bytes, ends_stream)) = complete {
            let fields = decoder.decode(&bytes).ok()?;
            if on == 1 {
                for (name, value) in fields {
                    match name.as_slice() {
                        b":status" => status = Some(value),
                        b"grpc-status" => grpc = Some(value),
                        _ => {}
                    }
                }
                ends = ends_stream;
            }
        }
        if ends {
            break;
        }
    }
    if status.as_deref() != Some(b"200") || grpc.as_deref() != Some(b"0") {
        return None;
    }
    let (prefix, message) = data.split_at_checked(5)?;
    let declared = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    (prefix[0] == 0 && declared == message.len()).then(|| message.to_vec())
}

/// A DATA or HEADERS payload without its padding (and a HEADERS frame's priority fields).
fn unpadded(payload: &[u8], flags: u8, headers: bool) -> Option<&[u8]> {
    let (pad, payload) = if flags & 0x8 != 0 {
        let (&pad, rest) = payload.split_first()?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    let payload = if headers && flags & 0x20 != 0 {
        payload.get(5..)?
    } else {
        payload
    };
    payload.get(..payload.len().checked_sub(pad)?)
}

/// What the fast hook reads of `bytes` (as `talk` does, all at once): the message, or unsure.
fn fast_call(bytes: &[u8]) -> Result<Vec<u8>, Unsure> {
    let (mut block, mut scratch, mut answer) =
        (vec![0u8; 64 * 1024], vec![0u8; 128 * 1024], vec![0u8; 1 << 20]);
    let mut io = wire::Io {
        block: &mut block,
        scratch: &mut scratch,
        answer: &mut answer,
    };
    let mut call = wire::Call::default();
    let mut rest = bytes;
    while !call.ended() {
        // Out of bytes before the stream ended: the hook would wait, then time out.
        let (frame, used) = wire::next_frame(rest)?.ok_or(Unsure)?;
        rest = &rest[used..];
        call.on_frame(&frame, &mut io, &mut [0u8; 17])?;
    }
    let wire::Io { answer, .. } = io;
    call.message(answer).map(<[u8]>::to_vec)
}

/// Frames of one answer, as graspd's gRPC server could send them (and, when `odd`, with what a
/// server may send but graspd's does not: other streams' header blocks, GOAWAY, RST_STREAM).
struct Answer {
    frames: Vec<u8>,
    /// Only what tonic's server sends: the fast hook must read it, not be unsure.
    plain: bool,
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A header block as HEADERS and CONTINUATION frames, maybe padded or with priority fields.
fn header_frames(rng: &mut Rng, out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool) {
    let pieces = 1 + rng.below(3);
    let cut = |i: usize| block.len() * i / pieces;
    for i in 0..pieces {
        let piece = &block[cut(i)..cut(i + 1)];
        let last = i + 1 == pieces;
        let mut flags = if last { wire::END_HEADERS } else { 0 };
        if i == 0 {
            if end_stream {
                flags |= wire::END_STREAM;
            }
            let mut payload = Vec::new();
            let pad = if rng.chance(4) { rng.below(8) } else { 0 };
            if pad > 0 {
                flags |= wire::PADDED;
                payload.push(pad as u8);
            }
            if rng.chance(4) {
                flags |= wire::PRIORITY;
                payload.extend_from_slice(&[0, 0, 0, 0, 16]);
            }
            payload.extend_from_slice(piece);
            payload.extend(std::iter::repeat_n(0, pad));
            frame(out, wire::HEADERS, flags, stream, &payload);
        } else {
            frame(out, wire::CONTINUATION, flags, stream, piece);
        }
    }
}

fn answer(rng: &mut Rng) -> Answer {
    let mut encoder = loona_hpack::Encoder::new();
    let mut out = Vec::new();
    let mut plain = true;
    let message = authorize_answer(rng).encode_to_vec();
    let mut data = vec![0u8];
    data.extend_from_slice(&(message.len() as u32).to_be_bytes());
    data.extend_from_slice(&message);
    if rng.chance(2) {
        frame(&mut out, wire::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    }
    let grpc_status: &[u8] = if rng.chance(6) { b"13" } else { b"0" };
    let http_status: &[u8] = if rng.chance(10) { b"503" } else { b"200" };
    if rng.chance(8) {
        // Trailers-only: one block ends the stream.
        let block = encoder.encode([(&b":status"[..], http_status), (b"grpc-status", grpc_status)]);
        header_frames(rng, &mut out, wire::STREAM, &block, true);
        return Answer { frames: out, plain };
    }
    let block = encoder.encode([
        (&b":status"[..], http_status),
        (b"content-type", b"application/grpc"),
        (b"date", b"Mon, 30 Nov 2026 04:00:00 GMT"),
    ]);
    header_frames(rng, &mut out, wire::STREAM, &block, false);
    let mut at = 0;
    while at < data.len() {
        let end = (at + 1 + rng.below(data.len())).min(data.len());
        match rng.below(10) {
            0 => frame(&mut out, wire::PING, 0, 0, &rng.next().to_be_bytes()),
            1 => frame(&mut out, 0x8, 0, 0, &[0, 0, 1, 0]), // WINDOW_UPDATE
            2 => frame(&mut out, wire::SETTINGS, wire::ACK, 0, &[]),
            3 if rng.chance(2) => {
                plain = false;
                match rng.below(4) {
                    0 => {
                        let other = encoder.encode([(&b":status"[..], &b"200"[..]), (b"x-other", b"1")]);
                        header_frames(rng, &mut out, 3, &other, false);
                    }
                    1 => frame(
                        &mut out,
                        wire::GOAWAY,
                        0,
                        0,
                        &[0, 0, 0, rng.below(2) as u8, 0, 0, 0, 0],
                    ),
                    2 => frame(
                        &mut out,
                        wire::RST_STREAM,
                        0,
                        rng.below(2) as u32 * 2 + 1,
                        &[0, 0, 0, 8],
                    ),
                    _ => frame(&mut out, wire::DATA, 0, 3, b"elsewhere"),
                }
            }
            _ => {}
        }
        let mut flags = 0;
        let mut payload = Vec::new();
        let pad = if rng.chance(5) { rng.below(6) } else { 0 };
        if pad > 0 {
            flags |= wire::PADDED;
            payload.push(pad as u8);
        }
        payload.extend_from_slice(&data[at..end]);
        payload.extend(std::iter::repeat_n(0, pad));
        frame(&mut out, wire::DATA, flags, wire::STREAM, &payload);
        at = end;
    }
    let trailers = encoder.encode([(&b"grpc-status"[..], grpc_status), (b"grpc-message", b"")]);
    header_frames(rng, &mut out, wire::STREAM, &trailers, true);
    Answer { frames: out, plain }
}

#[test]
fn a_whole_answer_is_read_as_a_careful_client_reads_it() {
    let (cases, seed) = plan("answers");
    let mut rng = Rng::new(seed);
    let (mut read, mut allowed) = (0, 0);
    for case in 0..cases {
        let Answer { frames, plain } = answer(&mut rng);
        let mutated = rng.chance(2);
        let input = if mutated { rng.mutate(frames) } else { frames };
        let expected = reference_call(&input);
        match fast_call(&input) {
            Ok(message) => {
                read += 1;
                assert_eq!(
                    Some(&message),
                    expected.as_ref(),
                    "seed {seed} case {case}: the fast hook read a message the reference does not: {input:?}"
                );
                if wire_authorize(&message).is_ok_and(|(yes, _)| yes) {
                    allowed += 1;
                    assert_eq!(
                        prost_authorize(&message).map(|(yes, _)| yes),
                        Some(true),
                        "seed {seed} case {case}"
                    );
                }
            }
            Err(Unsure) => assert!(
                mutated || !plain || expected.is_none(),
                "seed {seed} case {case}: unsure of an answer graspd's server sends: {input:?}"
            ),
        }
    }
    assert!(
        read > cases / 4 && allowed > cases / 10,
        "only {read} answers read, {allowed} allowed, of {cases}"
    );
}

//! Unit tests of the fast hook's wire code (hook/fast/wire.rs, hook/fast/huffman.rs), against
//! RFC 7541's examples and against prost, the protobuf library the daemon answers with.

use grasp_proto::v1::{
    AuthorizePushRequest, AuthorizePushResponse, ProcessResult, RefVerdict, ReportPushResponse,
};
use prost::Message;

use crate::huffman;
use crate::wire::{self, Out, Table, Unsure, Update};

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn huffman_decoded(input: &[u8]) -> Result<String, Unsure> {
    let mut out = [0u8; 256];
    huffman::decode(input, &mut out).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

#[test]
fn huffman_decodes_the_rfc_7541_examples() {
    for (coded, text) in [
        ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
        ("a8eb 1064 9cbf", "no-cache"),
        ("25a8 49e9 5ba9 7d7f", "custom-key"),
        ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ("", ""),
    ] {
        assert_eq!(huffman_decoded(&hex(coded)), Ok(text.to_owned()), "{coded}");
    }
}

#[test]
fn huffman_refuses_bad_padding_and_eos() {
    // '0' is 00000; padding must be ones.
    assert_eq!(huffman_decoded(&[0b0000_0000]), Err(Unsure));
    assert_eq!(huffman_decoded(&[0b0000_0111]), Ok("0".to_owned()));
    // A whole byte of padding is too long.
    assert_eq!(huffman_decoded(&[0b0000_0111, 0xff]), Err(Unsure));
    // EOS (thirty ones) inside the string.
    assert_eq!(huffman_decoded(&[0xff, 0xff, 0xff, 0xff]), Err(Unsure));
    // Output that does not fit.
    let mut tiny = [0u8; 3];
    assert_eq!(huffman::decode(&hex("f1e3 c2e5 f23a"), &mut tiny), Err(Unsure));
}

fn decode_block(table: &mut Table, block: &[u8]) -> Result<Vec<(String, String)>, Unsure> {
    let mut scratch = vec![0u8; 2 * 4096];
    let mut fields = Vec::new();
    table.decode(block, &mut scratch, |name, value| {
        fields.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    })?;
    Ok(fields)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// RFC 7541 C.3 (plain) and C.4 (Huffman): three requests on one connection, the later ones
/// referring to entries the earlier ones added to the dynamic table.
#[test]
fn hpack_decodes_the_rfc_7541_request_examples_with_the_dynamic_table() {
    let first = pairs(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ]);
    let mut second = first.clone();
    second.push(("cache-control".into(), "no-cache".into()));
    let third = pairs(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ]);
    let plain = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    let huffman = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    for blocks in [plain, huffman] {
        let mut table = Table::new();
        assert_eq!(decode_block(&mut table, &hex(blocks[0])), Ok(first.clone()));
        assert_eq!(decode_block(&mut table, &hex(blocks[1])), Ok(second.clone()));
        assert_eq!(decode_block(&mut table, &hex(blocks[2])), Ok(third.clone()));
    }
}

#[test]
fn hpack_evicts_the_oldest_entries_and_refuses_what_it_cannot_know() {
    let mut table = Table::new();
    // Shrink the table to 64 bytes: one entry of 32 + name + value fits at a time.
    // 0x3f 0x21 is a size update to 31 + 33 = 64.
    let mut block = vec![0x3f, 0x21];
    // Literal with incremental indexing, new name "a" = "1", then "b" = "2".
    block.extend([0x40, 1, b'a', 1, b'1', 0x40, 1, b'b', 1, b'2']);
    // Index 62: the newest dynamic entry.
    block.push(0x80 | 62);
    assert_eq!(
        decode_block(&mut table, &block),
        Ok(pairs(&[("a", "1"), ("b", "2"), ("b", "2")]))
    );
    // "a" was evicted: index 63 does not exist.
    assert_eq!(decode_block(&mut table, &[0x80 | 63]), Err(Unsure));
    // Index 0, a size update above what the hook allows, truncated input.
    assert_eq!(decode_block(&mut table, &[0x80]), Err(Unsure));
    assert_eq!(decode_block(&mut table, &[0x3f, 0xe2, 0x1f]), Err(Unsure));
    assert_eq!(decode_block(&mut table, &[0x40, 5, b'a']), Err(Unsure));
}

fn updates<'a>() -> [Update<'a>; 2] {
    [
        Update {
            old: b"0000000000000000000000000000000000000000",
            new: b"1111111111111111111111111111111111111111",
            name: b"refs/heads/main",
        },
        Update {
            old: b"2222222222222222222222222222222222222222",
            new: b"3333333333333333333333333333333333333333",
            name: b"refs/tags/v1",
        },
    ]
}

#[test]
fn push_requests_decode_with_prost() {
    let mut buf = vec![0u8; 4096];
    let mut out = Out::new(&mut buf);
    wire::push_request(&mut out, b"/srv/git/npub1x/repo.git", &updates()).expect("fits");
    wire::push_origin(
        &mut out,
        b"/srv/git/npub1x/repo.git/objects/incoming-Ab12",
        b"192.0.2.7",
    )
    .expect("fits");
    let request = AuthorizePushRequest::decode(out.bytes()).expect("prost decodes it");
    assert_eq!(request.repo_path, "/srv/git/npub1x/repo.git");
    assert_eq!(
        request.quarantine_path,
        "/srv/git/npub1x/repo.git/objects/incoming-Ab12"
    );
    assert_eq!(request.client_address, "192.0.2.7");
    assert_eq!(request.updates.len(), 2);
    assert_eq!(request.updates[0].old_oid, "0".repeat(40));
    assert_eq!(request.updates[0].new_oid, "1".repeat(40));
    assert_eq!(request.updates[1].ref_name, "refs/tags/v1");

    let mut bare = vec![0u8; 4096];
    let mut out = Out::new(&mut bare);
    wire::push_request(&mut out, b"/repo", &updates()).expect("fits");
    wire::push_origin(&mut out, b"", b"").expect("fits");
    let request = AuthorizePushRequest::decode(out.bytes()).expect("prost decodes it");
    assert!(request.quarantine_path.is_empty() && request.client_address.is_empty());

    let mut small = vec![0u8; 40];
    assert_eq!(
        wire::push_request(&mut Out::new(&mut small), b"/repo", &updates()),
        Err(Unsure)
    );
}

#[test]
fn authorize_answers_decode_in_order_and_only_when_whole() {
    let answer = AuthorizePushResponse {
        allowed: false,
        verdicts: vec![
            RefVerdict {
                ref_name: "refs/heads/main".into(),
                allowed: true,
                message: String::new(),
            },
            RefVerdict {
                ref_name: "refs/heads/x".into(),
                allowed: false,
                message: "ref refs/heads/x: state wants abc, push has def".into(),
            },
        ],
    }
    .encode_to_vec();
    let mut said = Vec::new();
    assert_eq!(
        wire::authorize_response(&answer, |line| said.push(line.to_owned())),
        Ok(false)
    );
    assert_eq!(said, ["ref refs/heads/x: state wants abc, push has def"]);

    let allowed = AuthorizePushResponse {
        allowed: true,
        verdicts: Vec::new(),
    }
    .encode_to_vec();
    assert_eq!(wire::authorize_response(&allowed, |_| {}), Ok(true));
    // Unknown fields are skipped; a truncated message says nothing at all.
    let mut with_unknown = allowed.clone();
    with_unknown.extend([0x78, 0x05, 0x82, 0x01, 0x01, b'z']);
    assert_eq!(wire::authorize_response(&with_unknown, |_| {}), Ok(true));
    let mut nothing_said = true;
    assert_eq!(
        wire::authorize_response(&answer[..answer.len() - 3], |_| nothing_said = false),
        Err(Unsure)
    );
    assert!(nothing_said);
    // Not UTF-8.
    let bad = [0x12, 0x04, 0x1a, 0x02, 0xff, 0xfe];
    assert_eq!(wire::authorize_response(&bad, |_| {}), Err(Unsure));
}

#[test]
fn report_answers_decode_their_messages() {
    let answer = ReportPushResponse {
        result: Some(ProcessResult {
            states_released: 1,
            errors: vec!["x".into()],
            ..Default::default()
        }),
        messages: vec!["graspd: released 1 state(s)".into(), String::new(), "two".into()],
    }
    .encode_to_vec();
    let mut said = Vec::new();
    assert_eq!(
        wire::report_response(&answer, |line| said.push(line.to_owned())),
        Ok(())
    );
    assert_eq!(said, ["graspd: released 1 state(s)", "two"]);
}

#[test]
fn hook_input_parses_only_plain_lines() {
    let mut slots = [Update::default(); 4];
    let input = format!(
        "{} {} refs/heads/main\n{} {} refs/tags/v1\n",
        "0".repeat(40),
        "a".repeat(40),
        "b".repeat(64),
        "c".repeat(64)
    );
    assert_eq!(wire::parse_updates(input.as_bytes(), &mut slots), Ok(2));
    assert_eq!(slots[1].name, b"refs/tags/v1");
    for bad in [
        String::new(),
        format!("{} {} refs/heads/main", "0".repeat(40), "a".repeat(40)),
        format!("{} {} refs/heads/main\r\n", "0".repeat(40), "a".repeat(40)),
        format!("{} {} main\n", "0".repeat(40), "a".repeat(40)),
        format!("{} {} refs/heads/a..b\n", "0".repeat(40), "a".repeat(40)),
        format!("{} {} refs/heads/main\n", "0".repeat(40), "A".repeat(40)),
        format!("{} {} refs/heads/main\n", "0".repeat(40), "a".repeat(64)),
        format!("{} {} refs/heads/m x\n", "0".repeat(40), "a".repeat(40)),
        format!("{} {} refs/heads/é\n", "0".repeat(40), "a".repeat(40)),
    ] {
        let mut slots = [Update::default(); 4];
        assert_eq!(
            wire::parse_updates(bad.as_bytes(), &mut slots),
            Err(Unsure),
            "{bad:?}"
        );
    }
    let many = format!("{} {} refs/heads/main\n", "0".repeat(40), "a".repeat(40)).repeat(5);
    let mut slots = [Update::default(); 4];
    assert_eq!(wire::parse_updates(many.as_bytes(), &mut slots), Err(Unsure));
}

#[test]
fn a_call_is_a_preface_settings_and_one_stream_of_headers_and_data() {
    let message = vec![7u8; 40_000];
    let mut buf = vec![0u8; 80 * 1024];
    let mut out = Out::new(&mut buf);
    wire::call(&mut out, b"AuthorizePush", &message).expect("fits");
    let bytes = out.bytes().to_vec();
    let mut rest = bytes.strip_prefix(wire::PREFACE).expect("preface");
    let mut frames = Vec::new();
    while let Some((frame, used)) = wire::next_frame(rest).expect("well-formed") {
        frames.push((frame.kind, frame.flags, frame.stream, frame.payload.to_vec()));
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
    assert_eq!(
        kinds,
        [
            wire::SETTINGS,
            0x8,
            wire::HEADERS,
            wire::DATA,
            wire::DATA,
            wire::DATA
        ]
    );
    let (_, flags, stream, block) = &frames[2];
    assert_eq!((*flags, *stream), (wire::END_HEADERS, wire::STREAM));
    let fields = decode_block(&mut Table::new(), block).expect("our own block decodes");
    assert!(fields.contains(&(":path".into(), "/grasp.v1.HookService/AuthorizePush".into())));
    assert!(fields.contains(&(":method".into(), "POST".into())));
    assert!(fields.contains(&("content-type".into(), "application/grpc".into())));
    assert!(fields.contains(&("te".into(), "trailers".into())));
    let data: Vec<u8> = frames[3..].iter().flat_map(|f| f.3.clone()).collect();
    assert_eq!(data[0], 0);
    assert_eq!(
        u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize,
        message.len()
    );
    assert_eq!(&data[5..], &message[..]);
    assert_eq!(frames[5].1, wire::END_STREAM);
    assert_eq!(frames[3].1, 0);

    // More than the peer's initial window: not for the fast path.
    let mut buf = vec![0u8; 200 * 1024];
    assert_eq!(
        wire::call(&mut Out::new(&mut buf), b"ReportPush", &vec![0u8; 70_000]),
        Err(Unsure)
    );
}

#[test]
fn frame_content_drops_padding_and_priority() {
    let frame = |kind, flags, payload: &'static [u8]| wire::Frame {
        kind,
        flags,
        stream: 1,
        payload,
    };
    assert_eq!(wire::content(&frame(wire::DATA, 0, b"abc")), Ok(&b"abc"[..]));
    assert_eq!(
        wire::content(&frame(wire::DATA, wire::PADDED, b"\x02abc\0\0")),
        Ok(&b"abc"[..])
    );
    assert_eq!(
        wire::content(&frame(
            wire::HEADERS,
            wire::PADDED | wire::PRIORITY,
            b"\x01\0\0\0\x03\x10ab\0"
        )),
        Ok(&b"ab"[..])
    );
    assert_eq!(
        wire::content(&frame(wire::DATA, wire::PADDED, b"\x09abc")),
        Err(Unsure)
    );
    assert_eq!(wire::content(&frame(wire::DATA, wire::PADDED, b"")), Err(Unsure));
}

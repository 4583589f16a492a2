//! Decoder tests: byte-split invariance and one test per protocol rule.

use super::*;
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_client_frame(fin, op, payload, KEY)
}

fn raw(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(true, OpCode::Binary, payload);
    f[0] = b0;
    f
}

/// Decodes `input` fed in the pieces `cuts` gives, collecting everything until the first
/// error.
fn decode_split(input: &[u8], cuts: &[usize]) -> (Vec<Incoming>, Option<ProtocolError>) {
    let mut dec = Decoder::new(Role::Server, DecoderLimits::default());
    let mut out = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    for end in bounds {
        let end = end.max(start);
        let mut chunk = &input[start..end];
        start = end;
        loop {
            match dec.decode(&mut chunk) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn decode_all(input: &[u8]) -> (Vec<Incoming>, Option<ProtocolError>) {
    decode_split(input, &[])
}

fn sample_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(frame(true, OpCode::Text, "héllo wörld €𝄞".as_bytes()));
    s.extend(frame(false, OpCode::Binary, &[1, 2, 3]));
    s.extend(frame(true, OpCode::Ping, b"ping!"));
    s.extend(frame(false, OpCode::Continuation, &vec![7u8; 300]));
    s.extend(frame(true, OpCode::Continuation, &vec![9u8; 70_000]));
    s.extend(frame(false, OpCode::Text, &"€".as_bytes()[..1]));
    s.extend(frame(true, OpCode::Continuation, &"€".as_bytes()[1..]));
    s.extend(frame(true, OpCode::Pong, b""));
    s.extend(frame(true, OpCode::Close, &[0x03, 0xe8, b'b', b'y', b'e']));
    s
}

#[test]
fn every_single_split_of_a_stream_gives_the_same_result() {
    let stream = sample_stream();
    let whole = decode_all(&stream);
    assert_eq!(whole.1, None);
    assert_eq!(whole.0.len(), 6);
    // Every cut point near the frame boundaries and inside headers; the long payload in
    // the middle is covered by the random splits below.
    let mut points: Vec<usize> = (0..200).collect();
    points.extend(stream.len() - 200..stream.len());
    for p in points {
        assert_eq!(decode_split(&stream, &[p]), whole, "split at {p}");
    }
}

#[test]
fn byte_at_a_time_gives_the_same_result() {
    let stream = sample_stream();
    let cuts: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(decode_split(&stream, &cuts), decode_all(&stream));
}

proptest! {
    #[test]
    fn random_splits_give_the_same_result(cuts in proptest::collection::vec(0usize..71_000, 0..20)) {
        let stream = sample_stream();
        prop_assert_eq!(decode_split(&stream, &cuts), decode_all(&stream));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), cuts in proptest::collection::vec(0usize..512, 0..8)) {
        let _ = decode_split(&data, &cuts);
    }
}

#[test]
fn messages_decode() {
    let mut s = frame(true, OpCode::Text, b"hi");
    s.extend(frame(false, OpCode::Text, b"a"));
    s.extend(frame(true, OpCode::Ping, b"p"));
    s.extend(frame(true, OpCode::Continuation, b"b"));
    let (out, err) = decode_all(&s);
    assert_eq!(err, None);
    assert_eq!(
        out,
        vec![
            Incoming::Text("hi".into()),
            Incoming::Ping(b"p".to_vec()),
            Incoming::Text("ab".into()),
        ]
    );
}

fn first_error(input: &[u8]) -> ProtocolError {
    decode_all(input).1.expect("expected an error")
}

#[test]
fn unmasked_frame_is_1002() {
    let e = first_error(&encode_frame(true, OpCode::Text, b"x"));
    assert_eq!(e, ProtocolError::UnmaskedFrame);
    assert_eq!(e.close_code(), 1002);
}

#[test]
fn reserved_bits_are_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        let e = first_error(&raw(0x80 | rsv | 0x1, b"x"));
        assert_eq!(e, ProtocolError::ReservedBits);
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn reserved_opcodes_are_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_eq!(
            first_error(&raw(0x80 | op, b"")),
            ProtocolError::ReservedOpcode(op)
        );
    }
}

#[test]
fn fragmented_control_is_1002() {
    assert_eq!(
        first_error(&frame(false, OpCode::Ping, b"")),
        ProtocolError::FragmentedControl
    );
}

#[test]
fn long_control_is_1002() {
    assert_eq!(
        first_error(&frame(true, OpCode::Ping, &[0; 126])),
        ProtocolError::ControlTooLong(126)
    );
}

#[test]
fn continuation_rules() {
    assert_eq!(
        first_error(&frame(true, OpCode::Continuation, b"x")),
        ProtocolError::UnexpectedContinuation
    );
    let mut s = frame(false, OpCode::Text, b"a");
    s.extend(frame(true, OpCode::Text, b"b"));
    assert_eq!(first_error(&s), ProtocolError::ExpectedContinuation);
}

#[test]
fn invalid_utf8_fails_mid_fragment() {
    // The second fragment of an unfinished message carries an invalid sequence: the error
    // comes before the message would end.
    let mut s = frame(false, OpCode::Text, b"ok");
    s.extend(frame(
        false,
        OpCode::Continuation,
        &[0xf4, 0x90, 0x80, 0x80],
    ));
    let (out, err) = decode_all(&s);
    assert!(out.is_empty());
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
}

#[test]
fn invalid_utf8_fails_mid_frame() {
    // Only the first bytes of a long frame have arrived and they are already invalid.
    let mut payload = vec![b'a'; 1000];
    payload[3] = 0xff;
    let s = frame(true, OpCode::Text, &payload);
    let mut dec = Decoder::new(Role::Server, DecoderLimits::default());
    let mut part = &s[..20];
    assert_eq!(dec.decode(&mut part), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn truncated_code_point_at_message_end_is_1007() {
    let s = frame(true, OpCode::Text, &[0xe2, 0x82]);
    assert_eq!(first_error(&s), ProtocolError::InvalidUtf8);
}

#[test]
fn close_payload_rules() {
    assert_eq!(
        first_error(&frame(true, OpCode::Close, &[3])),
        ProtocolError::CloseTooShort
    );
    assert_eq!(
        first_error(&frame(true, OpCode::Close, &[0x03, 0xed])),
        ProtocolError::InvalidCloseCode(1005)
    );
    let e = first_error(&frame(true, OpCode::Close, &[0x03, 0xe8, 0xff]));
    assert_eq!(e, ProtocolError::InvalidCloseReason);
    assert_eq!(e.close_code(), 1007);
    let (out, err) = decode_all(&frame(true, OpCode::Close, &[]));
    assert_eq!((out, err), (vec![Incoming::Close(None)], None));
}

#[test]
fn size_limits_are_1009() {
    let limits = DecoderLimits {
        max_frame_size: 100,
        max_message_size: 150,
    };
    let mut dec = Decoder::new(Role::Server, limits);
    let f = frame(true, OpCode::Binary, &[0; 101]);
    let e = dec.decode(&mut &f[..]).unwrap_err();
    assert_eq!(e.close_code(), 1009);

    let mut dec = Decoder::new(Role::Server, limits);
    let mut s = frame(false, OpCode::Binary, &[0; 100]);
    s.extend(frame(true, OpCode::Continuation, &[0; 51]));
    let mut input = &s[..];
    let e = loop {
        match dec.decode(&mut input) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("expected an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(e, ProtocolError::MessageTooBig { max: 150 });
    assert_eq!(e.close_code(), 1009);
}

#[test]
fn sixty_four_bit_length_with_msb_is_1002() {
    let mut f = vec![0x82, 0xff];
    f.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&KEY);
    assert_eq!(first_error(&f), ProtocolError::InvalidLength);
}

#[test]
fn errors_are_sticky() {
    let mut dec = Decoder::new(Role::Server, DecoderLimits::default());
    let bad = encode_frame(true, OpCode::Text, b"x");
    assert!(dec.decode(&mut &bad[..]).is_err());
    let good = frame(true, OpCode::Text, b"x");
    assert!(dec.decode(&mut &good[..]).is_err());
}

#[test]
fn client_role_rejects_masked_frames() {
    let mut dec = Decoder::new(Role::Client, DecoderLimits::default());
    let f = frame(true, OpCode::Text, b"x");
    assert_eq!(dec.decode(&mut &f[..]), Err(ProtocolError::MaskedFrame));
    let mut dec = Decoder::new(Role::Client, DecoderLimits::default());
    let f = encode_frame(true, OpCode::Text, b"x");
    assert_eq!(
        dec.decode(&mut &f[..]),
        Ok(Some(Incoming::Text("x".into())))
    );
}

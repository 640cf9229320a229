//! Unit tests for the DATA/BDAT decoders: every input is fed whole, byte by byte and split at
//! every offset, and must give the same result each way.

use super::*;

/// Outcome of decoding: the message (or error) and how many input bytes DATA consumed.
type Decoded = (Result<Vec<u8>, BodyError>, Option<usize>);

fn decode_pieces(max: u64, pieces: &[&[u8]]) -> Decoded {
    let mut d = DataDecoder::new(max);
    let mut consumed = 0;
    for piece in pieces {
        match d.feed(piece) {
            Some(n) => {
                return (d.finish(), Some(consumed + n));
            }
            None => consumed += piece.len(),
        }
    }
    (d.finish(), None)
}

/// Decodes `input` whole, byte by byte and split at every offset; asserts all agree.
fn decode(max: u64, input: &[u8]) -> Decoded {
    let whole = decode_pieces(max, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_pieces(max, &bytes), whole, "byte by byte: {input:?}");
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(
            decode_pieces(max, &[a, b]),
            whole,
            "split at {i}: {input:?}"
        );
    }
    whole
}

#[test]
fn crlf_dot_crlf_ends_data_and_the_rest_is_left_for_commands() {
    let input = b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let (msg, end) = decode(1000, input);
    assert_eq!(msg, Ok(b"Subject: x\r\n\r\nhello\r\n".to_vec()));
    assert_eq!(end, Some(input.len() - b"QUIT\r\n".len()));
}

#[test]
fn an_empty_message_is_just_the_terminator() {
    assert_eq!(decode(1000, b".\r\n"), (Ok(Vec::new()), Some(3)));
}

#[test]
fn dot_stuffing_is_removed_from_line_starts_only() {
    let (msg, _) = decode(1000, b"..leading\r\n...two\r\nmid.dle\r\n.x\r\n.\r\n");
    assert_eq!(msg, Ok(b".leading\r\n..two\r\nmid.dle\r\nx\r\n".to_vec()));
}

#[test]
fn smuggling_terminators_never_end_data() {
    // Each vector is followed by a would-be second message; none may end DATA.
    for vector in [
        &b"\n.\n"[..],
        b"\r.\r",
        b"\r\n.\n",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\r\n.\r",
        b"\n.\r",
    ] {
        let mut input = b"Subject: one\r\n\r\nbody".to_vec();
        input.extend_from_slice(vector);
        input.extend_from_slice(
            b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n",
        );
        let (msg, end) = decode(10_000, &input);
        assert_eq!(end, None, "{vector:?} ended DATA");
        assert_eq!(msg, Err(BodyError::BareNewline), "{vector:?}");
        // With the real terminator after it, the whole thing is one refused message.
        input.extend_from_slice(b"smuggled\r\n.\r\n");
        let (msg, end) = decode(10_000, &input);
        assert_eq!(end, Some(input.len()), "{vector:?}");
        assert_eq!(msg, Err(BodyError::BareNewline), "{vector:?}");
    }
}

#[test]
fn bare_lf_and_bare_cr_are_refused_after_the_terminator() {
    for input in [
        &b"a\nb\r\n.\r\n"[..],
        b"a\rb\r\n.\r\n",
        b"a\r\r\n.\r\n",
        b"\nx\r\n.\r\n",
        b".\rx\r\n.\r\n",
    ] {
        let (msg, end) = decode(1000, input);
        assert_eq!(end, Some(input.len()), "{input:?}");
        assert_eq!(msg, Err(BodyError::BareNewline), "{input:?}");
    }
    assert_eq!(BodyError::BareNewline.reply(), reply::BARE_LF);
}

#[test]
fn size_cap_reads_to_the_end_then_refuses() {
    let mut input = vec![b'x'; 5000];
    input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let (msg, end) = decode(100, &input);
    assert_eq!(msg, Err(BodyError::TooBig));
    assert_eq!(end, Some(input.len() - 6));
    // Exactly at the cap is fine.
    assert_eq!(decode(4, b"abc\r\n.\r\n").0, Err(BodyError::TooBig));
    assert_eq!(decode(5, b"abc\r\n.\r\n").0, Ok(b"abc\r\n".to_vec()));
    assert_eq!(BodyError::TooBig.reply(), reply::MESSAGE_TOO_BIG);
}

#[test]
fn feeding_after_the_end_consumes_nothing() {
    let mut d = DataDecoder::new(100);
    assert_eq!(d.feed(b".\r\n"), Some(3));
    assert!(d.is_done());
    assert_eq!(d.feed(b"more"), Some(0));
}

fn bdat(max: u64, binary: bool, chunks: &[(&[u8], usize)]) -> Result<Vec<u8>, BodyError> {
    let mut body = Body::new(max, binary);
    for (data, size) in chunks {
        let mut c = Chunk::new(*size as u64);
        // Feed byte by byte to exercise partial chunks.
        let mut used = 0;
        for b in data.chunks(1) {
            if c.is_done() {
                break;
            }
            match c.feed(b, Some(&mut body)) {
                Some(n) => used += n,
                None => used += 1,
            }
        }
        assert!(c.is_done());
        assert_eq!(used, *size);
    }
    body.finish()
}

#[test]
fn bdat_takes_exact_byte_counts_and_keeps_dots() {
    let got = bdat(1000, false, &[(b"a\r\n.\r\n", 6), (b"b\r\nQUIT\r\n", 3)]);
    assert_eq!(got, Ok(b"a\r\n.\r\nb\r\n".to_vec()));
}

#[test]
fn bdat_crlf_split_across_chunks_is_not_bare() {
    assert_eq!(
        bdat(1000, false, &[(b"a\r", 2), (b"\nb\r\n", 4)]),
        Ok(b"a\r\nb\r\n".to_vec())
    );
    assert_eq!(
        bdat(1000, false, &[(b"a\r", 2), (b"b\r\n", 3)]),
        Err(BodyError::BareNewline)
    );
    assert_eq!(
        bdat(1000, false, &[(b"a\r", 2)]),
        Err(BodyError::BareNewline)
    );
}

#[test]
fn binarymime_allows_any_octet() {
    assert_eq!(
        bdat(1000, true, &[(b"\x00\n\r\xff", 4)]),
        Ok(b"\x00\n\r\xff".to_vec())
    );
}

#[test]
fn bdat_size_cap_counts_every_chunk() {
    assert_eq!(
        bdat(5, false, &[(b"abc", 3), (b"\r\n", 2)]),
        Ok(b"abc\r\n".to_vec())
    );
    assert_eq!(
        bdat(5, false, &[(b"abc", 3), (b"\r\n\r\n", 4)]),
        Err(BodyError::TooBig)
    );
}

#[test]
fn a_discarded_chunk_is_still_consumed() {
    let mut c = Chunk::new(4);
    assert_eq!(c.feed(b"ab", None), None);
    assert_eq!(c.feed(b"cdQUIT", None), Some(2));
}

#[test]
fn decoder_never_panics_on_hostile_bytes() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..2_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let alphabet = b"\r\n.a\x00";
        let input: Vec<u8> = (0..(seed % 24) as usize)
            .map(|i| alphabet[((seed >> (i * 2 % 60)) % 5) as usize])
            .collect();
        let (_, end) = decode(8, &input);
        if let Some(n) = end {
            assert!(input[..n].ends_with(b"\r\n.\r\n") || input[..n] == *b".\r\n");
        }
    }
}

/// The line-end check jumps between CR and LF bytes; this is the byte-at-a-time rule it
/// must agree with (RFC 5321 §2.3.8: CR only before LF, LF only after CR).
fn bare_line_end_bytewise(pieces: &[&[u8]]) -> bool {
    let mut prev_cr = false;
    for &b in pieces.concat().iter() {
        if (b == b'\n' && !prev_cr) || (prev_cr && b != b'\n') {
            return true;
        }
        prev_cr = b == b'\r';
    }
    prev_cr
}

#[test]
fn line_end_check_agrees_with_the_bytewise_rule_on_every_short_input_and_split() {
    const ALPHABET: &[u8] = b"a\r\n";
    for len in 0..=7u32 {
        for mut n in 0..3usize.pow(len) {
            let mut input = Vec::new();
            for _ in 0..len {
                input.push(ALPHABET[n % 3]);
                n /= 3;
            }
            for split in 0..=input.len() {
                let (a, b) = input.split_at(split);
                let mut body = Body::new(1000, false);
                body.push(a);
                body.push(b);
                let refused = body.finish() == Err(BodyError::BareNewline);
                assert_eq!(refused, bare_line_end_bytewise(&[a, b]), "{a:?} | {b:?}");
            }
        }
    }
}

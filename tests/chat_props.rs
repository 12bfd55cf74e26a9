//! The framing core against a model: for any input, any split into reads and any sequence of
//! terminators (changed inside each found_terminator), the framer's records equal those of a
//! naive framer that sees the whole input at once.

use asyncore::chat::{FrameEvent, Framer, Terminator};
use bytes::Bytes;
use proptest::prelude::*;

/// Terminators over a small alphabet, so that they occur, overlap and get split.
fn terminator() -> impl Strategy<Value = Terminator> {
    prop_oneof![
        6 => prop::collection::vec(prop::sample::select(&b"ab\r\n"[..]), 1..5)
            .prop_map(Terminator::from),
        3 => (0usize..9).prop_map(Terminator::Count),
        1 => Just(Terminator::None),
        1 => Just(Terminator::from(Vec::new())),
    ]
}

/// Records and the unterminated rest, seeing the whole input at once.
fn model(input: &[u8], terminators: &[Terminator]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut records = Vec::new();
    let mut current = Vec::new();
    let mut turn = 0;
    let mut rest = input;
    loop {
        let found = match &terminators[turn % terminators.len()] {
            Terminator::Count(n) if *n > 0 && rest.len() >= *n => Some((*n, 0)),
            Terminator::Bytes(t) if !t.is_empty() => (0..rest.len())
                .find(|&i| rest[i..].starts_with(t))
                .map(|i| (i, t.len())),
            _ => None,
        };
        let Some((len, skip)) = found else {
            current.extend_from_slice(rest);
            return (records, current);
        };
        current.extend_from_slice(&rest[..len]);
        records.push(std::mem::take(&mut current));
        rest = &rest[len + skip..];
        turn += 1;
    }
}

/// The framer fed `input` in reads ending at `cuts`.
fn framed(
    input: &[u8],
    cuts: &[usize],
    terminators: &[Terminator],
) -> Result<(Vec<Vec<u8>>, Vec<u8>), TestCaseError> {
    let mut framer = Framer::new(terminators[0].clone());
    let mut records = Vec::new();
    let mut current = Vec::new();
    let mut turn = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut start = 0;
    for cut in cuts {
        framer.feed(Bytes::copy_from_slice(&input[start..cut]));
        start = cut;
        while let Some(event) = framer.next_event() {
            match event {
                FrameEvent::Data(data) => {
                    prop_assert!(!data.is_empty(), "an empty Data event");
                    current.extend_from_slice(&data);
                }
                FrameEvent::Terminator => {
                    records.push(std::mem::take(&mut current));
                    turn += 1;
                    framer.set_terminator(terminators[turn % terminators.len()].clone());
                }
            }
        }
        if let Terminator::Bytes(t) = framer.terminator() {
            prop_assert!(
                framer.buffered() < t.len().max(1),
                "held back {} bytes for a {}-byte terminator",
                framer.buffered(),
                t.len()
            );
        }
    }
    current.extend_from_slice(&framer.take_buffered());
    Ok((records, current))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn framer_matches_the_whole_input_model(
        input in prop::collection::vec(prop::sample::select(&b"ab\r\nx"[..]), 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        terminators in prop::collection::vec(terminator(), 1..6),
    ) {
        let expected = model(&input, &terminators);
        let got = framed(&input, &cuts, &terminators)?;
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn one_byte_reads_match_too(
        input in prop::collection::vec(prop::sample::select(&b"ab\r\n"[..]), 0..120),
        terminators in prop::collection::vec(terminator(), 1..4),
    ) {
        let cuts: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(framed(&input, &cuts, &terminators)?, model(&input, &terminators));
    }
}

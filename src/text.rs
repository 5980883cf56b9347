//! Small text helpers shared by every renderer.

/// Cuts `text` to at most `max` characters, on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    // No more bytes than `max`: no more characters either.
    if text.len() <= max {
        return text.to_owned();
    }
    // Cut at character `max - 1` (room for the mark) when there are more than `max`.
    // Sliced, not rebuilt character by character (an issue body is cut on every
    // webhook that carries it); an ASCII start is measured without decoding it.
    let kept = max.saturating_sub(1);
    let keep_until = if text.as_bytes()[..kept].is_ascii() {
        kept
    } else {
        match text.char_indices().nth(kept) {
            Some((at, _)) => at,
            None => return text.to_owned(),
        }
    };
    // What follows the kept characters fits when it is at most `max - kept` characters.
    if text[keep_until..].chars().nth(max - kept).is_none() {
        return text.to_owned();
    }
    let mut cut = String::with_capacity(keep_until + '…'.len_utf8());
    cut.push_str(&text[..keep_until]);
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("ééé", 1), "…");
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello!", 5), "hell…");
        assert_eq!(truncate("", 0), "");
        assert_eq!(truncate("a", 0), "…");
    }

    #[test]
    fn keeps_at_most_max_characters_for_any_text() {
        for text in ["", "a", "héllo wörld", "日本語のテキスト", "a\u{0}b🎉c"] {
            for max in 0..12 {
                let cut = truncate(text, max);
                let chars = text.chars().count();
                if chars <= max {
                    assert_eq!(cut, text);
                } else {
                    assert_eq!(cut.chars().count(), max.max(1), "{text:?} {max}");
                    assert!(cut.ends_with('…'));
                    assert!(text.starts_with(cut.trim_end_matches('…')));
                }
            }
        }
    }
}

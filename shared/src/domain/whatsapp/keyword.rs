//! Keywords a person can reply with. Meta parses none of these: honouring them is the business's job.

/// What a reply means, if it is a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, UNSUBSCRIBE or BAND: opt out of marketing from every merchant, at once.
    OptOut,
    /// DATA: start a data-subject request.
    DataRequest,
}

/// Classifies a text reply: case-insensitive, surrounding whitespace and punctuation ignored
/// ("Stop!", " stop. ", "UNSUBSCRIBE" all count); a keyword inside a sentence does not.
pub fn classify(text: &str) -> Option<Keyword> {
    let word = text.trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation() || is_unicode_punct(c));
    if word.is_empty() || word.len() > 16 {
        return None;
    }
    match word.to_uppercase().as_str() {
        "STOP" | "UNSUBSCRIBE" | "BAND" => Some(Keyword::OptOut),
        "DATA" => Some(Keyword::DataRequest),
        _ => None,
    }
}

fn is_unicode_punct(c: char) -> bool {
    matches!(c, '¡' | '¿' | '“' | '”' | '‘' | '’' | '«' | '»' | '…' | '。' | '！' | '？')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_keywords_match_in_any_case_with_surrounding_space_and_punctuation() {
        for t in ["STOP", "stop", " Stop ", "stop!", "¡STOP!", "\tunsubscribe.\n", "Band", "“stop”"] {
            assert_eq!(classify(t), Some(Keyword::OptOut), "{t:?}");
        }
        assert_eq!(classify(" data? "), Some(Keyword::DataRequest));
    }

    #[test]
    fn keywords_inside_sentences_or_other_words_do_not_count() {
        for t in ["please stop sending", "stopped", "bandana", "my data", "", "!!!"] {
            assert_eq!(classify(t), None, "{t:?}");
        }
    }
}

//! Percent-decoding (`%XX`), the one implementation lmcpp's crates share, with the two
//! policies they need: a query value is decoded strictly (`+` is a space, and a malformed
//! escape or invalid UTF-8 means the value is not what the client meant), a path or URL
//! leniently (a stray `%` stays as written).

/// Decodes a query-string value: `+` is a space, `%XX` a byte; `None` for a malformed
/// escape or bytes that are not UTF-8.
///
/// ```
/// use lmcpp_types::percent::decode_query;
/// assert_eq!(decode_query("a+b%2Fc").as_deref(), Some("a b/c"));
/// assert_eq!(decode_query("50%"), None);
/// ```
pub fn decode_query(text: &str) -> Option<String> {
    String::from_utf8(decode_bytes(text, true, true)?).ok()
}

/// Decodes `%XX` escapes in a path or URL; a malformed escape stays as written and bytes
/// that are not UTF-8 are replaced (`+` is itself).
///
/// ```
/// use lmcpp_types::percent::decode_lossy;
/// assert_eq!(decode_lossy("a%20b%2"), "a b%2");
/// assert_eq!(decode_lossy("1+1"), "1+1");
/// ```
pub fn decode_lossy(text: &str) -> String {
    let bytes = decode_bytes(text, false, false).unwrap_or_else(|| text.as_bytes().to_vec());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The bytes `text` encodes; `strict` refuses a malformed escape (else it is kept as is).
fn decode_bytes(text: &str, plus_is_space: bool, strict: bool) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ if strict => return None,
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_policies() {
        for (text, query, lossy) in [
            ("plain", Some("plain"), "plain"),
            ("a%20b", Some("a b"), "a b"),
            ("a+b", Some("a b"), "a+b"),
            ("%zz%41", None, "%zzA"),
            ("a%20b%2", None, "a b%2"),
            ("%", None, "%"),
            ("%ff", None, "\u{fffd}"),
            ("%E2%9C%93", Some("\u{2713}"), "\u{2713}"),
        ] {
            assert_eq!(decode_query(text).as_deref(), query, "{text}");
            assert_eq!(decode_lossy(text), lossy, "{text}");
        }
    }
}

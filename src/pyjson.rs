//! Python-compatible JSON serialization: `json.dumps(obj)` with its defaults (`", "` and `": "`
//! separators, `ensure_ascii=True`, keys in insertion order, Python's float `repr`). The reference
//! pipeline received `details` as such a string; raw inputs that hold `details` as an object are
//! turned into the same string here.

use serde_json::Value;
use std::fmt::Write;

/// `json.dumps(value)` as Python writes it.
pub fn dumps(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                out.push_str(&float_repr(f));
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, k);
                out.push_str(": ");
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal with Python's `ensure_ascii` escaping. Runs of printable ASCII are
/// copied whole.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while !rest.is_empty() {
        let plain = rest.bytes().position(|b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\');
        let Some(at) = plain else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().expect("a char at a char boundary");
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push('"');
}

/// `json.dumps(json.loads(json))` for one JSON value's text, written while it is parsed (no
/// value tree). Same output as [`dumps`] of the parsed [`Value`]: the same parser calls the same
/// number and string callbacks. An object with a repeated key (Python keeps the first key's
/// place with the last value) and every error go through the [`Value`] path, so errors read the
/// same too.
pub fn transcode(json: &str) -> Result<String, serde_json::Error> {
    let mut out = String::with_capacity(json.len() + json.len() / 8);
    let mut de = serde_json::Deserializer::from_str(json);
    let streamed = serde::de::DeserializeSeed::deserialize(Writer { out: &mut out }, &mut de).and_then(|()| de.end());
    match streamed {
        Ok(()) => Ok(out),
        Err(_) => Ok(dumps(&serde_json::from_str::<Value>(json)?)),
    }
}

/// Writes the value it deserializes into `out` as [`dumps`] would.
struct Writer<'a> {
    out: &'a mut String,
}

impl<'de> serde::de::DeserializeSeed<'de> for Writer<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Writer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.out.push_str(&float_repr(v));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_str(self.out, v);
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push('[');
        let mut first = true;
        loop {
            let at = self.out.len();
            if !first {
                self.out.push_str(", ");
            }
            if seq.next_element_seed(Writer { out: self.out })?.is_none() {
                self.out.truncate(at);
                break;
            }
            first = false;
        }
        self.out.push(']');
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push('{');
        // Where each written key lies in `out`: escaping is one-to-one, so equal written keys
        // are equal keys.
        let mut keys: Vec<(usize, usize)> = Vec::new();
        loop {
            let at = self.out.len();
            if !keys.is_empty() {
                self.out.push_str(", ");
            }
            let start = self.out.len();
            if map.next_key_seed(Writer { out: self.out })?.is_none() {
                self.out.truncate(at);
                break;
            }
            let end = self.out.len();
            let key = &self.out[start..end];
            if keys.iter().any(|&(s, e)| &self.out[s..e] == key) {
                return Err(serde::de::Error::custom("repeated key"));
            }
            keys.push((start, end));
            self.out.push_str(": ");
            map.next_value_seed(Writer { out: self.out })?;
        }
        self.out.push('}');
        Ok(())
    }
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for exponents in
/// `-4..16`, otherwise `d.ddde+XX`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let sci = format!("{f:e}"); // e.g. "-1.2345e-5", shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len() as i32;
    if (-4..16).contains(&exp) {
        let mut s = String::from(sign);
        if exp < 0 {
            s.push_str("0.");
            for _ in 0..(-exp - 1) {
                s.push('0');
            }
            s.push_str(&digits);
        } else if exp + 1 >= n {
            s.push_str(&digits);
            for _ in 0..(exp + 1 - n) {
                s.push('0');
            }
            s.push_str(".0");
        } else {
            let point = (exp + 1) as usize;
            s.push_str(&digits[..point]);
            s.push('.');
            s.push_str(&digits[point..]);
        }
        s
    } else {
        let mut s = String::from(sign);
        s.push_str(&digits[..1]);
        if n > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let _ = write!(s, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (100.0, "100.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn dumps_like_python() {
        let v: Value = serde_json::from_str(
            r#"{"Z": 1, "a\"b": [1.0, null, true], "é": "naïve ☃ 😀", "c": {"x": -3, "t": "a\tb\u0001\u007f/"}}"#,
        )
        .unwrap();
        assert_eq!(
            dumps(&v),
            r#"{"Z": 1, "a\"b": [1.0, null, true], "\u00e9": "na\u00efve \u2603 \ud83d\ude00", "c": {"x": -3, "t": "a\tb\u0001\u007f/"}}"#
        );
    }

    #[test]
    fn transcode_writes_what_dumps_writes() {
        for json in [
            r#"{"Z": 1, "a\"b": [1.0, null, true], "é": "naïve ☃ 😀", "c": {"x": -3, "t": "a\tb\u0001\u007f/"}}"#,
            r#"{}"#,
            r#"[]"#,
            r#"{"a":[],"b":{},"c":[[],[{}]]}"#,
            r#"{"n": [0, -0, 1e2, 1.50, -2.5e-7, 18446744073709551615, 18446744073709551616, -9223372036854775809]}"#,
            r#"{"s": "\ud83d\ude00 \u00e9\b\f\n\r\\\/ \u2028"}"#,
            r#"{"k": 1, "k": 2, "j": 3}"#,
            r#"{"o": {"k": 1, "j": {"k": [1, 2]}, "k": {"x": 1}}}"#,
            "  {\"pad\" : [ 1 , 2 ] }  ",
        ] {
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(transcode(json).unwrap(), dumps(&v), "{json}");
        }
        // Repeated keys: the first key's place, the last value (Python's dict).
        assert_eq!(transcode(r#"{"k": 1, "j": 3, "k": 2}"#).unwrap(), r#"{"k": 2, "j": 3}"#);
        for bad in [r#"{"a": }"#, r#"{"a": 1"#, r#"{"a": "\ud800"}"#, r#"{"a": 1} x"#, "[1,]", r#"{"big": 1e400}"#] {
            let want = serde_json::from_str::<Value>(bad).unwrap_err().to_string();
            assert_eq!(transcode(bad).unwrap_err().to_string(), want, "{bad}");
        }
    }

    /// Random JSON text: objects with keys from a small set (so some repeat), arrays, strings
    /// with escapes and non-ASCII, numbers of every kind.
    fn random_json(rng: &mut rand_chacha::ChaCha8Rng, depth: u32) -> String {
        use rand::Rng;
        const ATOMS: [&str; 12] =
            ["a", "K", "é", "😀", "\\n", "\\\"", "\\u00e9", "\\ud83d\\ude00", " ", "\\\\", "/", "\\t"];
        const NUMBERS: [&str; 10] =
            ["0", "-0", "7", "-12", "1.50", "2e3", "-2.5E-7", "0.1", "18446744073709551616", "123456789012"];
        let pick = |rng: &mut rand_chacha::ChaCha8Rng| {
            let n = rng.random_range(0..5);
            (0..n).map(|_| ATOMS[rng.random_range(0..ATOMS.len())]).collect::<String>()
        };
        match if depth > 3 { rng.random_range(0..4) } else { rng.random_range(0..6) } {
            0 => format!("\"{}\"", pick(rng)),
            1 => NUMBERS[rng.random_range(0..NUMBERS.len())].to_owned(),
            2 => ["null", "true", "false"][rng.random_range(0..3)].to_owned(),
            3 => format!("\"{}\"", pick(rng)),
            4 => {
                let n = rng.random_range(0..4);
                let items: Vec<String> = (0..n).map(|_| random_json(rng, depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let n = rng.random_range(0..5);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        format!("\"{}\": {}", ["k", "j", "é", "K"][rng.random_range(0..4)], random_json(rng, depth + 1))
                    })
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }

    #[test]
    fn transcode_agrees_with_dumps_on_fuzz() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let mut repeated = 0;
        for _ in 0..20_000 {
            let json = random_json(&mut rng, 0);
            let v: Value = serde_json::from_str(&json).unwrap();
            let mut de = serde_json::Deserializer::from_str(&json);
            if serde::de::DeserializeSeed::deserialize(Writer { out: &mut String::new() }, &mut de).is_err() {
                repeated += 1;
            }
            assert_eq!(transcode(&json).unwrap(), dumps(&v), "{json}");
        }
        assert!(repeated > 100, "the fuzz set repeats keys ({repeated})");
    }
}

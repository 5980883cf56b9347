//! The `/oz` grammar: finding a command in any comment text and parsing its line never
//! panics, and a parsed line prints back to a line that parses the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(line) = ozbridge::command::find_command(&text, "/oz") {
        let first = ozbridge::command::parse(&line);
        let again = ozbridge::command::find_command(&format!("/oz {}", line.full_text()), "/oz")
            .map(|l| ozbridge::command::parse(&l).is_ok());
        if first.is_ok() {
            assert_eq!(again, Some(true), "a parsed line must parse again: {:?}", line.full_text());
        }
    }
});

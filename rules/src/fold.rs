//! The normaliser's tables: the class of each ASCII byte, leetspeak, invisible
//! characters, letters of other scripts that imitate Latin ones, and letters that fold to
//! two.

use crate::normalise::Class;

const fn ascii_classes() -> [Class; 128] {
    let mut t = [Class::Separator; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() {
            Class::Letter
        } else if b.is_ascii_digit() {
            Class::Digit
        } else if b == b'@' || b == b'$' || b == b'!' {
            Class::Symbol
        } else {
            Class::Separator
        };
        i += 1;
    }
    t
}

pub(crate) static ASCII_CLASS: [Class; 128] = ascii_classes();

/// Leetspeak: digits and symbols standing for letters inside a word.
#[inline]
pub(crate) fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '8' => 'b',
        '9' => 'g',
        '@' => 'a',
        '$' => 's',
        '!' => 'i',
        _ => return None,
    })
}

/// Characters that render as nothing and are used to split words invisibly.
#[inline]
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Letters from other scripts (and Latin look-alikes without a decomposition) that are
/// used to dodge filters, folded to the Latin letter they imitate. Input is lower case.
#[inline]
pub(crate) fn confusable(c: char) -> char {
    match c {
        'а' | 'α' | 'ɑ' | 'ᴀ' => 'a',
        'в' | 'β' | 'ʙ' => 'b',
        'с' | 'ϲ' | 'ᴄ' => 'c',
        'ԁ' | 'đ' | 'ᴅ' => 'd',
        'е' | 'ε' | 'ᴇ' => 'e',
        'ɡ' | 'ɢ' => 'g',
        'һ' | 'н' | 'ħ' | 'ʜ' => 'h',
        'і' | 'ї' | 'ι' | 'ı' | 'ɪ' => 'i',
        'ј' | 'ᴊ' => 'j',
        'к' | 'κ' | 'ᴋ' => 'k',
        'ӏ' | 'ł' | 'ʟ' => 'l',
        'м' | 'ᴍ' => 'm',
        'п' | 'η' | 'ɴ' => 'n',
        'о' | 'ο' | 'ø' | 'ᴏ' => 'o',
        'р' | 'ρ' | 'ᴘ' => 'p',
        'ԛ' => 'q',
        'г' | 'ʀ' => 'r',
        'ѕ' | 'ꜱ' => 's',
        'т' | 'τ' | 'ŧ' | 'ᴛ' => 't',
        'υ' | 'μ' | 'ᴜ' => 'u',
        'ν' | 'ᴠ' => 'v',
        'ԝ' | 'ω' | 'ᴡ' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' | 'ү' | 'ʏ' => 'y',
        'ᴢ' => 'z',
        other => other,
    }
}

/// Letters that fold to two Latin letters.
#[inline]
pub(crate) fn expansion(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' | 'ẞ' => "ss",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'þ' | 'Þ' => "th",
        _ => return None,
    })
}

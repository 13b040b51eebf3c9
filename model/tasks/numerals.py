"""Numbers spelled out: English words ("three hundred twelve") and standard Chinese numerals (三百一十二)."""

from __future__ import annotations

EN_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
EN_TEENS = (
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
EN_ONES = EN_UNITS + EN_TEENS  # index = number, 0..19
EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")  # index = tens digit
ZH_DIGITS = "零一二三四五六七八九"


def english_words(number: int) -> str:
    """0..999 in lower-case English words, without "and" or hyphens: 312 → "three hundred twelve"."""
    if not 0 <= number <= 999:
        raise ValueError(f"{number} is not between 0 and 999")
    if number == 0:
        return "zero"
    hundreds, rest = divmod(number, 100)
    words = [EN_ONES[hundreds], "hundred"] if hundreds else []
    if 0 < rest < 20:
        words.append(EN_ONES[rest])
    elif rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(EN_TENS[tens])
        if ones:
            words.append(EN_ONES[ones])
    return " ".join(words)


def chinese_numeral(number: int) -> str:
    """0..999 in standard mainland Chinese numerals: 12 → 十二, 105 → 一百零五, 110 → 一百一十."""
    if not 0 <= number <= 999:
        raise ValueError(f"{number} is not between 0 and 999")
    if number == 0:
        return "零"
    hundreds, rest = divmod(number, 100)
    tens, ones = divmod(rest, 10)
    text = ZH_DIGITS[hundreds] + "百" if hundreds else ""
    if tens:
        # 10..19 alone drop the 一 (十二), after a hundred they keep it (一百一十二).
        text += ("" if tens == 1 and not hundreds else ZH_DIGITS[tens]) + "十"
    elif hundreds and ones:
        text += "零"  # the empty tens place is read aloud: 一百零五
    if ones:
        text += ZH_DIGITS[ones]
    return text

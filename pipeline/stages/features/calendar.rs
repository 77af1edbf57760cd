//! Month indexes (`year * 12 + month`) of day numbers, as the readers of
//! the bills compute them row by row: the same arithmetic as
//! [`super::frames::month_index`] (whose test checks both against the
//! calendar), on one value at a time and behind a memo.

/// [`super::frames::month_index`] of a day number (days since 1970-01-01): the same
/// steps on one value, where the constant divisors compile to
/// multiplications.
pub(crate) fn month_of_day(day: i32) -> i32 {
    // Days since 0000-03-01; `doe` and what follows are never negative.
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (yoe * 365 + yoe / 4 - yoe / 100);
    let mp = (doy * 5 + 2) / 153;
    ((era * 400 + yoe) * 12 + mp + 3) as i32
}

/// Slots of a direct-mapped memo ([`MonthMemo`], validation's month
/// places): a few thousand bytes, with room for a history's hundred or so
/// distinct days (months' firsts and the days before them) without many
/// sharing a slot. With 64 slots they did, and the memo thrashed.
pub(crate) const MEMO_SLOTS: usize = 1 << MEMO_BITS;
const MEMO_BITS: u32 = 10;

/// [`month_of_day`] behind a direct-mapped memo: bills fall on a few dozen
/// distinct days (their months' first), so nearly every bill finds its
/// day's month, and whether the day is its month's first, without the
/// arithmetic.
pub(crate) struct MonthMemo {
    days: Box<[i32; MEMO_SLOTS]>,
    months: Box<[i32; MEMO_SLOTS]>,
    firsts: Box<[bool; MEMO_SLOTS]>,
}

impl MonthMemo {
    pub(crate) fn new() -> MonthMemo {
        MonthMemo {
            days: Box::new([i32::MIN; MEMO_SLOTS]),
            months: Box::new([month_of_day(i32::MIN); MEMO_SLOTS]),
            firsts: Box::new([true; MEMO_SLOTS]),
        }
    }

    /// The slot of `day`, filled.
    #[inline]
    fn slot(&mut self, day: i32) -> usize {
        let slot = memo_slot(day);
        if self.days[slot] != day {
            let month = month_of_day(day);
            self.days[slot] = day;
            self.months[slot] = month;
            // The first of a month is in another month than the day
            // before (the earliest day a Date holds counts as a first).
            self.firsts[slot] = day.checked_sub(1).is_none_or(|p| month_of_day(p) != month);
        }
        slot
    }

    /// [`month_of_day`] of `day`.
    #[inline]
    pub(crate) fn month(&mut self, day: i32) -> i32 {
        let slot = self.slot(day);
        self.months[slot]
    }

    /// Whether `day` is the first of its month.
    #[inline]
    pub(crate) fn is_first(&mut self, day: i32) -> bool {
        let slot = self.slot(day);
        self.firsts[slot]
    }
}

/// The slot of a day or month in a direct-mapped memo of [`MEMO_SLOTS`]:
/// the top bits of a Fibonacci hash, so that nearby values spread out.
#[inline]
pub(crate) fn memo_slot(v: i32) -> usize {
    ((v as u32).wrapping_mul(0x9E37_79B1) >> (32 - MEMO_BITS)) as usize
}

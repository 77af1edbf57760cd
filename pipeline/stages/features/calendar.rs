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

/// [`month_of_day`] behind a small direct-mapped memo: bills fall on a few
/// dozen distinct days (their months' first), so nearly every bill finds
/// its day's month without the arithmetic.
pub(crate) struct MonthMemo {
    days: [i32; 64],
    months: [i32; 64],
}

impl MonthMemo {
    pub(crate) fn new() -> MonthMemo {
        MonthMemo {
            days: [i32::MIN; 64],
            months: [month_of_day(i32::MIN); 64],
        }
    }

    /// [`month_of_day`] of `day`.
    #[inline]
    pub(crate) fn month(&mut self, day: i32) -> i32 {
        let slot = memo_slot(day);
        if self.days[slot] != day {
            self.days[slot] = day;
            self.months[slot] = month_of_day(day);
        }
        self.months[slot]
    }
}

/// The slot (0 to 63) of a day or month in a direct-mapped memo: the top
/// six bits of a Fibonacci hash, so that nearby values spread out.
#[inline]
pub(crate) fn memo_slot(v: i32) -> usize {
    ((v as u32).wrapping_mul(0x9E37_79B1) >> 26) as usize
}

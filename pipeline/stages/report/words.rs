//! Model terms in words, for readers who never saw the feature table.

/// What a feature measures, in a few words; `None` for a feature this
/// table does not know (an operator's extra column), which is shown by its
/// name with the underscores as spaces.
fn gloss(feature: &str) -> Option<&'static str> {
    Some(match feature {
        "tenure_months" => "months as a subscriber",
        "billed_months" => "months billed",
        "revenue_mean" => "average monthly bill",
        "margin_mean" => "average monthly margin",
        "revenue_last3" => "bills of the last 3 months",
        "margin_last3" => "margin of the last 3 months",
        "revenue_trend" => "trend of the bills",
        "bill_ratio_max3" => "largest recent bill against the usual",
        "lifetime_value" => "value over the first lifetime",
        "value_to_date" => "margin earned to date",
        "plan" => "plan",
        "monthly_fee" => "monthly fee",
        "complaints" => "complaints made",
        "complaints_satisfied" => "complaints resolved to satisfaction",
        "complaints_unsatisfied" => "complaints left unsatisfied",
        "complaints_open" => "complaints still open",
        "complaints_6m" => "complaints in the last 6 months",
        "share_satisfied" => "share of complaints resolved well",
        "days_since_complaint" => "days since the last complaint",
        "never_complained" => "never complained",
        "referrals" => "friends referred",
        "has_referred" => "has referred a friend",
        "was_referred" => "joined by referral",
        "earlier_defections" => "earlier departures",
        "months_since_return" => "months since an earlier return",
        "region" => "region",
        "channel" => "sales channel",
        "leave_reason" => "reason for leaving",
        "horizon_quarter" => "season",
        "days_since_defection" => "days since leaving",
        _ => return None,
    })
}

/// A feature name in words (`complaints_unsatisfied` → "complaints left
/// unsatisfied"); a one-hot level `plan=premium` → "plan: premium".
pub fn feature(name: &str) -> String {
    let (base, level) = match name.split_once('=') {
        Some((b, l)) => (b, Some(l)),
        None => (name, None),
    };
    let words = gloss(base)
        .map(str::to_string)
        .unwrap_or_else(|| base.replace('_', " "));
    match level {
        Some(l) => format!("{words}: {}", l.replace('_', " ")),
        None => words,
    }
}

/// A reason code (`billed_months +0.54`, a contribution to the log-odds
/// of returning) in words: "months billed +0.54" (the sign says whether it
/// raises or lowers the chance of return; the table's header says so).
pub fn reason(code: &str) -> String {
    match code.rsplit_once(' ') {
        Some((name, value)) if value.parse::<f64>().is_ok() => {
            format!("{} {}", feature(name), value.replace('-', "\u{2212}"))
        }
        _ => feature(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_read_as_sentences() {
        assert_eq!(
            reason("complaints_unsatisfied -0.61"),
            "complaints left unsatisfied \u{2212}0.61"
        );
        assert_eq!(reason("billed_months +0.54"), "months billed +0.54");
        assert_eq!(feature("plan=premium_tv"), "plan: premium tv");
        assert_eq!(feature("arpu_eur"), "arpu eur");
        assert_eq!(reason("odd"), "odd");
    }
}

//! The data contract as code: table names, canonical column names, logical
//! types and nullability (see `shared/docs/data-contract.md`).
//!
//! Column names are constants so that every stage spells them one way. This
//! module holds no logic beyond describing the contract; the rules that
//! relate tables to each other live in `stages::validate`.

use std::fmt;

/// Canonical column names.
pub mod col {
    #![allow(missing_docs)]
    pub const SUBSCRIBER_ID: &str = "subscriber_id";
    pub const SIGNUP_DATE: &str = "signup_date";
    pub const PLAN: &str = "plan";
    pub const MONTHLY_FEE: &str = "monthly_fee";
    pub const REGION: &str = "region";
    pub const CHANNEL: &str = "channel";
    pub const MONTH: &str = "month";
    pub const REVENUE: &str = "revenue";
    pub const COST_TO_SERVE: &str = "cost_to_serve";
    pub const OPENED_AT: &str = "opened_at";
    pub const RESOLVED_AT: &str = "resolved_at";
    pub const SATISFIED: &str = "satisfied";
    pub const CATEGORY: &str = "category";
    pub const REFERRER_ID: &str = "referrer_id";
    pub const REFERRED_AT: &str = "referred_at";
    pub const REFERRED_ID: &str = "referred_id";
    pub const CHURNED_AT: &str = "churned_at";
    pub const LEAVE_REASON: &str = "leave_reason";
    pub const RETURNED_AT: &str = "returned_at";
    pub const OFFERED_AT: &str = "offered_at";
    pub const ARM: &str = "arm";
    pub const PROPENSITY: &str = "propensity";
    /// Added to quarantined rows: why each was rejected.
    pub const REASON: &str = "reason";
}

/// Allowed values of `churn_events.leave_reason`.
pub const LEAVE_REASONS: [&str; 5] = ["price", "service", "both", "other", "unknown"];
/// Allowed values of `winback_offers.arm`.
pub const ARMS: [&str; 5] = ["control", "discount", "upgrade", "both", "tailored"];

/// The seven input tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// One row per subscriber.
    Subscribers,
    /// One row per subscriber per billed month.
    Billing,
    /// Care complaints.
    Complaints,
    /// Referrals made by subscribers.
    Referrals,
    /// One row per defection.
    ChurnEvents,
    /// One row per return.
    Reactivations,
    /// Win-back offers, randomised.
    WinbackOffers,
}

impl Table {
    /// All tables, in dependency order (a table's references come before it).
    pub const ALL: [Table; 7] = [
        Table::Subscribers,
        Table::Billing,
        Table::Complaints,
        Table::Referrals,
        Table::ChurnEvents,
        Table::Reactivations,
        Table::WinbackOffers,
    ];

    /// The table's file or directory name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Subscribers => "subscribers",
            Table::Billing => "billing",
            Table::Complaints => "complaints",
            Table::Referrals => "referrals",
            Table::ChurnEvents => "churn_events",
            Table::Reactivations => "reactivations",
            Table::WinbackOffers => "winback_offers",
        }
    }

    /// Looks a table up by name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether validation fails when the table is absent. `churn_events` is
    /// required to train, not to validate: its absence is reported.
    pub fn required(self) -> bool {
        matches!(self, Table::Subscribers | Table::Billing)
    }

    /// The column that names the subscriber a row belongs to.
    pub fn id_column(self) -> &'static str {
        match self {
            Table::Referrals => col::REFERRER_ID,
            _ => col::SUBSCRIBER_ID,
        }
    }

    /// The contract's columns of this table.
    pub fn columns(self) -> &'static [ColumnSpec] {
        use Kind::*;
        const fn c(name: &'static str, kind: Kind, nullable: bool) -> ColumnSpec {
            ColumnSpec {
                name,
                kind,
                nullable,
            }
        }
        match self {
            Table::Subscribers => {
                const C: &[ColumnSpec] = &[
                    c(col::SUBSCRIBER_ID, Id, false),
                    c(col::SIGNUP_DATE, Date, false),
                    c(col::PLAN, Str, false),
                    c(col::MONTHLY_FEE, Float, false),
                    c(col::REGION, Str, true),
                    c(col::CHANNEL, Str, true),
                ];
                C
            }
            Table::Billing => {
                const C: &[ColumnSpec] = &[
                    c(col::SUBSCRIBER_ID, Id, false),
                    c(col::MONTH, Date, false),
                    c(col::REVENUE, Float, false),
                    c(col::COST_TO_SERVE, Float, true),
                ];
                C
            }
            Table::Complaints => {
                const C: &[ColumnSpec] = &[
                    c(col::SUBSCRIBER_ID, Id, false),
                    c(col::OPENED_AT, Date, false),
                    c(col::RESOLVED_AT, Date, true),
                    c(col::SATISFIED, Bool, true),
                    c(col::CATEGORY, Str, true),
                ];
                C
            }
            Table::Referrals => {
                const C: &[ColumnSpec] = &[
                    c(col::REFERRER_ID, Id, false),
                    c(col::REFERRED_AT, Date, false),
                    c(col::REFERRED_ID, Id, true),
                ];
                C
            }
            Table::ChurnEvents => {
                const C: &[ColumnSpec] = &[
                    c(col::SUBSCRIBER_ID, Id, false),
                    c(col::CHURNED_AT, Date, false),
                    c(col::LEAVE_REASON, Str, false),
                ];
                C
            }
            Table::Reactivations => {
                const C: &[ColumnSpec] = &[
                    c(col::SUBSCRIBER_ID, Id, false),
                    c(col::RETURNED_AT, Date, false),
                    c(col::PLAN, Str, true),
                    c(col::MONTHLY_FEE, Float, true),
                ];
                C
            }
            Table::WinbackOffers => {
                const C: &[ColumnSpec] = &[
                    c(col::SUBSCRIBER_ID, Id, false),
                    c(col::OFFERED_AT, Date, false),
                    c(col::ARM, Str, false),
                    c(col::PROPENSITY, Float, true),
                ];
                C
            }
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Logical type of a contract column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Subscriber identifier: String or Int64 in the file; String inside.
    Id,
    /// Calendar date (Date32); timestamps are truncated to the day.
    Date,
    /// Text.
    Str,
    /// Float64; integer and Float32 columns are widened.
    Float,
    /// Boolean.
    Bool,
}

impl Kind {
    /// The type a column of this kind has inside the pipeline.
    pub fn dtype(self) -> polars::prelude::DataType {
        use polars::prelude::DataType;
        match self {
            Kind::Id | Kind::Str => DataType::String,
            Kind::Date => DataType::Date,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
        }
    }

    /// What the contract accepts, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Id => "String, an integer, or whole numbers as floats or decimals",
            Kind::Date => "Date (or a timestamp, truncated to the day, or text YYYY-MM-DD)",
            Kind::Str => "String (or categorical text)",
            Kind::Float => "Float64 (or an integer, Float32 or decimal, widened, or text)",
            Kind::Bool => "Boolean (or integers 0 and 1, or text true/false, yes/no)",
        }
    }
}

/// One contract column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// Canonical name.
    pub name: &'static str,
    /// Logical type.
    pub kind: Kind,
    /// Whether nulls are allowed.
    pub nullable: bool,
}

//! SQL built at run time for either backend. Placeholders are numbered
//! (`$1`, `$2`, ...): PostgreSQL requires that form, and SQLite binds `$N` to
//! argument N, so one text serves both. sqlx's own `QueryBuilder` writes `?`
//! under `Any`, which PostgreSQL rejects; this is the small part of it the
//! store uses.

use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;
use sqlx::{Arguments, AssertSqlSafe, Encode, Type};

/// Bound parameters a multi-row statement aims at. SQLite finds a numbered
/// parameter's slot by walking the statement's list of names, and the driver
/// asks for every parameter's name, so binding costs grow with the square of
/// the parameters in one statement: 9,600 of them (400 call records) spent
/// more time binding than the rest of the call path took. A few hundred keep
/// that walk short and statements still few.
const PARAMS_PER_STATEMENT: usize = 256;

/// Rows of `columns` parameters each that one multi-row statement takes.
pub(crate) const fn rows_per_statement(columns: usize) -> usize {
    let rows = PARAMS_PER_STATEMENT / if columns == 0 { 1 } else { columns };
    if rows == 0 { 1 } else { rows }
}

/// A statement being assembled: text plus the arguments bound so far.
pub(crate) struct QueryBuilder {
    sql: String,
    args: AnyArguments,
    error: Option<sqlx::error::BoxDynError>,
}

impl QueryBuilder {
    pub(crate) fn new(init: impl Into<String>) -> QueryBuilder {
        QueryBuilder {
            sql: init.into(),
            args: AnyArguments::default(),
            error: None,
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: impl std::fmt::Display) -> &mut QueryBuilder {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(self.sql, "{sql}");
        self
    }

    /// Appends the next placeholder and binds `value` to it.
    pub(crate) fn push_bind<'t, T>(&mut self, value: T) -> &mut QueryBuilder
    where
        T: Encode<'t, Any> + Type<Any>,
    {
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        let n = self.args.len();
        self.push(format_args!("${n}"))
    }

    /// Appends `VALUES (…), (…)`, one parenthesised row per item; `row` binds
    /// the item's values through the [`Separated`] it is given.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut row: F) -> &mut QueryBuilder
    where
        I: IntoIterator,
        F: FnMut(Separated<'_>, I::Item),
    {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            row(
                Separated {
                    builder: self,
                    first: true,
                },
                item,
            );
            self.push(")");
        }
        self
    }

    /// The finished statement, or the error a value gave when it was bound.
    pub(crate) fn build<'q>(self) -> crate::Result<Query<'q, Any, AnyArguments>> {
        match self.error {
            Some(e) => Err(crate::Error::Db(sqlx::Error::Encode(e))),
            None => Ok(sqlx::query_with(AssertSqlSafe(self.sql), self.args)),
        }
    }
}

/// The values of one row of [`QueryBuilder::push_values`], comma-separated.
pub(crate) struct Separated<'b> {
    builder: &'b mut QueryBuilder,
    first: bool,
}

impl Separated<'_> {
    pub(crate) fn push_bind<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'t, Any> + Type<Any>,
    {
        if !self.first {
            self.builder.push(", ");
        }
        self.first = false;
        self.builder.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_within_the_parameter_budget() {
        for columns in [1, 3, 12, 24, 100, 300] {
            let rows = rows_per_statement(columns);
            assert!(rows >= 1);
            assert!(rows == 1 || rows * columns <= PARAMS_PER_STATEMENT);
            assert!((rows + 1) * columns > PARAMS_PER_STATEMENT);
        }
        assert_eq!(rows_per_statement(0), PARAMS_PER_STATEMENT);
    }
}

//! `POST /api/Report` with `[{"_loadreportonly": true, "sql": "SELECT …"}]` (halo-api.md 2.3): runs the
//! query over the tables of [`crate::halo_report_tables`] without saving a report.
//!
//! The SQL understood is the part of SQL Server's `SELECT` a bulk read needs: `SELECT [DISTINCT] [TOP n]`
//! columns (`col`, `table.col`, `alias.col`, `[bracketed]`, `*`) each with an optional `[AS] alias`,
//! `FROM` a table with an optional alias, `[INNER | LEFT [OUTER]] JOIN … ON` conditions, `WHERE` with
//! `AND`, `OR`, `NOT`, parentheses, `=`, `<>`, `!=`, `<`, `>`, `<=`, `>=`, `IS [NOT] NULL` and `IN (…)`
//! over columns and literals, and `ORDER BY` columns `[ASC|DESC]`. Names are case-insensitive, text
//! compares case-insensitively (Halo's default collation). Errors use SQL Server's words ("Invalid column
//! name 'x'.", "Invalid object name 'x'.").
//!
//! The reply (halo-api.md 2.3 and Halo's OpenAPI `AnalyzerProfile` / `ReportContent`): by default one
//! object with the rows under `report.rows` (a POST of one record answers one object, halo-api.md 0), or,
//! with `halo_report_reply_array`, the one-element array `[{rows, available_columns}]` another client
//! reads [MCP]. How Halo answers a query that fails is not documented: a 400 with the message by default,
//! or, with `halo_report_errors_as_load_error`, a 200 whose `report.load_error` holds it (the less
//! convenient case, which looks like success). `halo_reports_forbidden` refuses reports with 403, as
//! Halo does for an application without `read:reporting`/`edit:reporting` (halo-api.md 1.2).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::halo_report_tables::{self as tables, Rows, Source, SqlType, Table};
use crate::scenario::State;
use crate::server::{Req, Resp};

/// Answers `POST /api/Report`.
pub(crate) fn post(st: &State, req: &Req) -> Resp {
    if st.settings.halo_reports_forbidden {
        return Resp::text(
            403,
            "You do not have permission to run reports (the API application needs read:reporting and edit:reporting).",
        );
    }
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return Resp::text(400, &e),
    };
    let profile = match &body {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Array(_) => return Resp::text(400, "POST /api/Report expects one report"),
        other => other,
    };
    if profile.get("_loadreportonly") != Some(&json!(true)) {
        // Saving reports is not emulated: only the run-without-saving form is.
        return Resp::text(
            400,
            "The emulator runs reports only with _loadreportonly: true (it does not save reports)",
        );
    }
    let Some(sql) = profile.get("sql").and_then(Value::as_str) else {
        return Resp::text(400, "The report has no sql");
    };
    match run(st, sql) {
        Ok((columns, rows)) => reply(st, sql, &columns, rows, None),
        Err(message) if st.settings.halo_report_errors_as_load_error => {
            reply(st, sql, &[], Vec::new(), Some(&message))
        }
        Err(message) => Resp::json(
            400,
            &json!({"ClassName": "System.Data.SqlClient.SqlException", "Message": message}),
        ),
    }
}

fn reply(st: &State, sql: &str, columns: &[String], rows: Vec<Value>, error: Option<&str>) -> Resp {
    let available: Vec<Value> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"name": c, "sequence": i + 1}))
        .collect();
    if st.settings.halo_report_reply_array {
        let mut item = json!({"rows": rows, "available_columns": available});
        if let Some(e) = error {
            item["load_error"] = json!(e);
        }
        return Resp::json(200, &json!([item]));
    }
    Resp::json(
        200,
        &json!({
            "id": 0, "name": "", "sql": sql, "_loadreportonly": true, "available_columns": available,
            "report": {"loaded": error.is_none(), "load_error": error, "rows": rows},
        }),
    )
}

/// Runs `sql`: the output column names and the rows.
pub(crate) fn run(st: &State, sql: &str) -> Result<(Vec<String>, Vec<Value>), String> {
    let tokens = tokenize(sql)?;
    let query = Parser { tokens, pos: 0 }.select()?;
    eval(st, &query)
}

// ---- tokens ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A name; `quoted` when written `[like this]` (never a keyword).
    Name {
        text: String,
        quoted: bool,
    },
    Number(f64),
    Str(String),
    Sym(&'static str),
}

impl Tok {
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Name { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }

    /// How SQL Server names the token in "Incorrect syntax near …".
    fn near(&self) -> String {
        match self {
            Tok::Name {
                text,
                quoted: false,
            } if is_keyword(text) => {
                format!("the keyword '{}'", text.to_uppercase())
            }
            Tok::Name { text, .. } => format!("'{text}'"),
            Tok::Number(n) => format!("'{n}'"),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Sym(s) => format!("'{s}'"),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "SELECT", "DISTINCT", "TOP", "FROM", "WHERE", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER",
    "FULL", "CROSS", "ON", "AND", "OR", "NOT", "IS", "NULL", "IN", "AS", "ORDER", "BY", "ASC",
    "DESC", "GROUP", "HAVING", "UNION", "INSERT", "UPDATE", "DELETE", "INTO", "VALUES", "SET",
    "LIKE",
];

fn is_keyword(s: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
}

fn tokenize(sql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' || c == '@' || c == '#' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '#' | '$'))
            {
                i += 1;
            }
            out.push(Tok::Name {
                text: chars[start..i].iter().collect(),
                quoted: false,
            });
        } else if c == '[' {
            let start = i + 1;
            let end = chars[start..]
                .iter()
                .position(|&c| c == ']')
                .map(|p| start + p)
                .ok_or_else(|| {
                    format!(
                        "Unclosed quotation mark after the character string '{}'.",
                        chars[start..].iter().collect::<String>()
                    )
                })?;
            out.push(Tok::Name {
                text: chars[start..end].iter().collect(),
                quoted: true,
            });
            i = end + 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse::<f64>()
                .map_err(|_| format!("Incorrect syntax near '{text}'."))?;
            out.push(Tok::Number(n));
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "Unclosed quotation mark after the character string '{s}'."
                        ));
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = ["<>", "!=", "<=", ">="]
                .into_iter()
                .find(|s| *s == two)
                .or_else(|| {
                    ["=", "<", ">", ",", ".", "(", ")", "*", ";"]
                        .into_iter()
                        .find(|s| s.starts_with(c))
                })
                .ok_or_else(|| format!("Incorrect syntax near '{c}'."))?;
            i += sym.len();
            out.push(Tok::Sym(sym));
        }
    }
    Ok(out)
}

// ---- syntax ----

/// `qualifier.column` or `column`.
#[derive(Debug, Clone)]
struct ColRef {
    qualifier: Option<String>,
    column: String,
}

#[derive(Debug, Clone)]
enum Operand {
    Col(ColRef),
    Num(f64),
    Str(String),
    Null,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, &'static str, Operand),
    IsNull(Operand, bool),
    In(Operand, Vec<Operand>),
}

#[derive(Debug, Clone)]
enum Item {
    /// `*` or `alias.*`.
    All(Option<String>),
    Col(Operand, Option<String>),
}

#[derive(Debug, Clone)]
struct TableRef {
    name: String,
    alias: Option<String>,
}

#[derive(Debug, Clone)]
struct Join {
    left_outer: bool,
    table: TableRef,
    on: Expr,
}

#[derive(Debug, Clone)]
struct Select {
    distinct: bool,
    top: Option<usize>,
    items: Vec<Item>,
    from: TableRef,
    joins: Vec<Join>,
    filter: Option<Expr>,
    order: Vec<(ColRef, bool)>,
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn syntax_error(&self) -> String {
        match self.peek() {
            Some(t) => format!("Incorrect syntax near {}.", t.near()),
            None => "Incorrect syntax near the end of the statement.".into(),
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), String> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if self.peek()
            == Some(&Tok::Sym(match sym {
                "," => ",",
                "." => ".",
                "(" => "(",
                ")" => ")",
                "*" => "*",
                ";" => ";",
                _ => return false,
            }))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A name that is not a keyword (or any `[quoted]` name).
    fn name(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Name { text, quoted }) if *quoted || !is_keyword(text) => {
                let t = text.clone();
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.syntax_error()),
        }
    }

    fn optional_alias(&mut self) -> Result<Option<String>, String> {
        if self.eat_kw("AS") {
            if let Some(Tok::Str(s)) = self.peek() {
                let s = s.clone();
                self.pos += 1;
                return Ok(Some(s));
            }
            return self.name().map(Some);
        }
        match self.peek() {
            Some(Tok::Name { text, quoted }) if *quoted || !is_keyword(text) => {
                self.name().map(Some)
            }
            _ => Ok(None),
        }
    }

    fn select(mut self) -> Result<Select, String> {
        self.expect_kw("SELECT")?;
        let distinct = self.eat_kw("DISTINCT");
        let top = if self.eat_kw("TOP") {
            let parens = self.eat_sym("(");
            let n = match self.next() {
                Some(Tok::Number(n)) if n >= 0.0 && n.fract() == 0.0 => n as usize,
                _ => {
                    self.pos -= 1;
                    return Err(self.syntax_error());
                }
            };
            if parens && !self.eat_sym(")") {
                return Err(self.syntax_error());
            }
            Some(n)
        } else {
            None
        };
        let mut items = vec![self.item()?];
        while self.eat_sym(",") {
            items.push(self.item()?);
        }
        self.expect_kw("FROM")?;
        let from = self.table_ref()?;
        let mut joins = Vec::new();
        loop {
            let left_outer = if self.eat_kw("LEFT") {
                self.eat_kw("OUTER");
                true
            } else {
                self.eat_kw("INNER");
                false
            };
            if !self.eat_kw("JOIN") {
                if left_outer {
                    return Err(self.syntax_error());
                }
                break;
            }
            let table = self.table_ref()?;
            self.expect_kw("ON")?;
            let on = self.expr()?;
            joins.push(Join {
                left_outer,
                table,
                on,
            });
        }
        let filter = if self.eat_kw("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let c = self.colref()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                order.push((c, desc));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.eat_sym(";");
        if self.peek().is_some() {
            return Err(self.syntax_error());
        }
        Ok(Select {
            distinct,
            top,
            items,
            from,
            joins,
            filter,
            order,
        })
    }

    fn table_ref(&mut self) -> Result<TableRef, String> {
        let mut name = self.name()?;
        // `dbo.USERS`: the schema is ignored.
        if self.eat_sym(".") {
            name = self.name()?;
        }
        let alias = self.optional_alias()?;
        Ok(TableRef { name, alias })
    }

    fn colref(&mut self) -> Result<ColRef, String> {
        let first = self.name()?;
        if self.eat_sym(".") {
            let column = self.name()?;
            return Ok(ColRef {
                qualifier: Some(first),
                column,
            });
        }
        Ok(ColRef {
            qualifier: None,
            column: first,
        })
    }

    fn item(&mut self) -> Result<Item, String> {
        if self.eat_sym("*") {
            return Ok(Item::All(None));
        }
        // `alias.*`
        if let (Some(Tok::Name { .. }), Some(Tok::Sym(".")), Some(Tok::Sym("*"))) = (
            self.tokens.get(self.pos),
            self.tokens.get(self.pos + 1),
            self.tokens.get(self.pos + 2),
        ) {
            let q = self.name()?;
            self.pos += 2;
            return Ok(Item::All(Some(q)));
        }
        let operand = self.operand()?;
        let alias = self.optional_alias()?;
        Ok(Item::Col(operand, alias))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.peek() {
            Some(Tok::Number(n)) => {
                let n = *n;
                self.pos += 1;
                Ok(Operand::Num(n))
            }
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(Operand::Str(s))
            }
            Some(t) if t.is_kw("NULL") => {
                self.pos += 1;
                Ok(Operand::Null)
            }
            _ => self.colref().map(Operand::Col),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.and_expr()?;
        while self.eat_kw("OR") {
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, String> {
        let mut left = self.predicate()?;
        while self.eat_kw("AND") {
            let right = self.predicate()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn predicate(&mut self) -> Result<Expr, String> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.predicate()?)));
        }
        if self.eat_sym("(") {
            let e = self.expr()?;
            if !self.eat_sym(")") {
                return Err(self.syntax_error());
            }
            return Ok(e);
        }
        let left = self.operand()?;
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            self.expect_kw("NULL")?;
            return Ok(Expr::IsNull(left, negated));
        }
        let not_in = self.eat_kw("NOT");
        if self.eat_kw("IN") {
            if !self.eat_sym("(") {
                return Err(self.syntax_error());
            }
            let mut list = vec![self.operand()?];
            while self.eat_sym(",") {
                list.push(self.operand()?);
            }
            if !self.eat_sym(")") {
                return Err(self.syntax_error());
            }
            let e = Expr::In(left, list);
            return Ok(if not_in { Expr::Not(Box::new(e)) } else { e });
        }
        if not_in {
            return Err(self.syntax_error());
        }
        let op = match self.peek() {
            Some(Tok::Sym(s)) if ["=", "<>", "!=", "<", ">", "<=", ">="].contains(s) => *s,
            _ => return Err(self.syntax_error()),
        };
        self.pos += 1;
        let right = self.operand()?;
        Ok(Expr::Cmp(left, op, right))
    }
}

// ---- evaluation ----

/// A table of the query with its rows (column values in the table's column order).
struct Bound {
    table: &'static Table,
    /// Columns this Halo version lacks (`halo_report_missing_columns`), by index.
    missing: Vec<usize>,
    /// The name the query refers to it by: its alias, else its name.
    label: String,
    rows: Vec<Vec<Value>>,
}

/// A column resolved to (table index in the query, column index).
type Slot = (usize, usize);

impl Bound {
    fn column(&self, name: &str) -> Option<usize> {
        self.table
            .column(name)
            .filter(|i| !self.missing.contains(i))
    }

    fn visible(&self) -> impl Iterator<Item = (usize, &'static str)> + '_ {
        self.table
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.missing.contains(i))
            .map(|(i, c)| (i, c.name))
    }
}

fn bind_col(bound: &[Bound], c: &ColRef) -> Result<Slot, String> {
    if let Some(q) = &c.qualifier {
        let Some(t) = bound.iter().position(|b| b.label.eq_ignore_ascii_case(q)) else {
            return Err(format!(
                "The multi-part identifier \"{q}.{}\" could not be bound.",
                c.column
            ));
        };
        return bound[t]
            .column(&c.column)
            .map(|i| (t, i))
            .ok_or_else(|| format!("Invalid column name '{}'.", c.column));
    }
    let hits: Vec<Slot> = bound
        .iter()
        .enumerate()
        .filter_map(|(t, b)| b.column(&c.column).map(|i| (t, i)))
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("Invalid column name '{}'.", c.column)),
        _ => Err(format!("Ambiguous column name '{}'.", c.column)),
    }
}

#[derive(Debug, Clone)]
enum BOperand {
    Col(Slot),
    Lit(Value),
}

#[derive(Debug, Clone)]
enum BExpr {
    And(Box<BExpr>, Box<BExpr>),
    Or(Box<BExpr>, Box<BExpr>),
    Not(Box<BExpr>),
    Cmp(BOperand, &'static str, BOperand),
    IsNull(BOperand, bool),
    In(BOperand, Vec<BOperand>),
}

fn bind_operand(bound: &[Bound], o: &Operand) -> Result<BOperand, String> {
    Ok(match o {
        Operand::Col(c) => BOperand::Col(bind_col(bound, c)?),
        Operand::Num(n) => BOperand::Lit(num(*n)),
        Operand::Str(s) => BOperand::Lit(json!(s)),
        Operand::Null => BOperand::Lit(Value::Null),
    })
}

fn bind_expr(bound: &[Bound], e: &Expr) -> Result<BExpr, String> {
    Ok(match e {
        Expr::And(a, b) => BExpr::And(
            Box::new(bind_expr(bound, a)?),
            Box::new(bind_expr(bound, b)?),
        ),
        Expr::Or(a, b) => BExpr::Or(
            Box::new(bind_expr(bound, a)?),
            Box::new(bind_expr(bound, b)?),
        ),
        Expr::Not(a) => BExpr::Not(Box::new(bind_expr(bound, a)?)),
        Expr::Cmp(a, op, b) => BExpr::Cmp(bind_operand(bound, a)?, op, bind_operand(bound, b)?),
        Expr::IsNull(a, negated) => BExpr::IsNull(bind_operand(bound, a)?, *negated),
        Expr::In(a, list) => BExpr::In(
            bind_operand(bound, a)?,
            list.iter()
                .map(|o| bind_operand(bound, o))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn num(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// A combined row: per table of the query, its row index (`None` for a LEFT JOIN without a match).
type Combined = Vec<Option<usize>>;

fn value<'a>(bound: &'a [Bound], row: &Combined, o: &'a BOperand) -> &'a Value {
    static NULL: Value = Value::Null;
    match o {
        BOperand::Lit(v) => v,
        BOperand::Col((t, c)) => row
            .get(*t)
            .copied()
            .flatten()
            .map_or(&NULL, |r| &bound[*t].rows[r][*c]),
    }
}

/// SQL Server's comparison: `None` when either side is NULL (unknown). Text compares case-insensitively
/// and ignoring trailing blanks; a bit compares as 0/1; text against a number compares as a number.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    let as_num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::String(x), Value::String(y)) => Some(
            x.trim_end()
                .to_lowercase()
                .cmp(&y.trim_end().to_lowercase()),
        ),
        _ => as_num(a)?.partial_cmp(&as_num(b)?),
    }
}

/// Three-valued truth: `None` is unknown (a row is kept only when `Some(true)`).
fn truth(bound: &[Bound], row: &Combined, e: &BExpr) -> Option<bool> {
    match e {
        BExpr::And(a, b) => match (truth(bound, row, a), truth(bound, row, b)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        BExpr::Or(a, b) => match (truth(bound, row, a), truth(bound, row, b)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        BExpr::Not(a) => truth(bound, row, a).map(|t| !t),
        BExpr::IsNull(a, negated) => Some(value(bound, row, a).is_null() != *negated),
        BExpr::Cmp(a, op, b) => {
            let ord = compare(value(bound, row, a), value(bound, row, b))?;
            Some(match *op {
                "=" => ord == Ordering::Equal,
                "<>" | "!=" => ord != Ordering::Equal,
                "<" => ord == Ordering::Less,
                ">" => ord == Ordering::Greater,
                "<=" => ord != Ordering::Greater,
                _ => ord != Ordering::Less,
            })
        }
        BExpr::In(a, list) => {
            let v = value(bound, row, a);
            let mut unknown = false;
            for o in list {
                match compare(v, value(bound, row, o)) {
                    Some(Ordering::Equal) => return Some(true),
                    None => unknown = true,
                    Some(_) => {}
                }
            }
            if unknown { None } else { Some(false) }
        }
    }
}

/// A stored value as the column's SQL type writes it in a report row (`NULL` for a missing value).
fn typed(v: Option<&Value>, ty: SqlType) -> Value {
    let v = match v {
        None | Some(Value::Null) => return Value::Null,
        Some(v) => v,
    };
    match ty {
        SqlType::Int => match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map_or(Value::Null, |i| json!(i)),
            Value::String(s) => s.trim().parse::<i64>().map_or(Value::Null, |i| json!(i)),
            Value::Bool(b) => json!(i64::from(*b)),
            _ => Value::Null,
        },
        SqlType::Float => match v {
            Value::Number(n) => n.as_f64().map_or(Value::Null, |f| json!(f)),
            Value::String(s) => s.trim().parse::<f64>().map_or(Value::Null, |f| json!(f)),
            _ => Value::Null,
        },
        SqlType::Bit => match v {
            Value::Bool(b) => json!(b),
            Value::Number(n) => json!(n.as_f64().is_some_and(|f| f != 0.0)),
            _ => Value::Null,
        },
        SqlType::Text => match v {
            Value::String(s) => json!(s),
            Value::Number(_) | Value::Bool(_) => json!(v.to_string()),
            _ => Value::Null,
        },
        // A `datetime` has no zone and no more than milliseconds: "2026-01-01T10:00:00".
        SqlType::DateTime => match v.as_str().map(str::trim) {
            Some(s) if s.len() >= 19 => json!(s[..19]),
            Some(s) if s.len() == 10 => json!(format!("{s}T00:00:00")),
            _ => Value::Null,
        },
    }
}

fn table_rows(st: &State, table: &Table) -> Vec<Vec<Value>> {
    let tenants: Vec<Value>;
    let records: &[Value] = match table.rows {
        Rows::Entity(e) => st.halo.get(e).map_or(&[], Vec::as_slice),
        Rows::ClientTenants => {
            tenants = st
                .halo
                .get("Client")
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    c["azure_tenants"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |mut t| {
                            t["client_id"] = c["id"].clone();
                            t
                        })
                })
                .collect();
            &tenants
        }
    };
    // `Udepartment` holds a department id: number the distinct department texts.
    let mut departments: Vec<String> = records
        .iter()
        .filter_map(|r| r.get("department").and_then(Value::as_str))
        .filter(|d| !d.trim().is_empty())
        .map(str::to_string)
        .collect();
    departments.sort();
    departments.dedup();
    records
        .iter()
        .map(|r| {
            table
                .columns
                .iter()
                .map(|c| match c.source {
                    Source::Field(f) => typed(r.get(f), c.ty),
                    Source::Null => Value::Null,
                    Source::DepartmentId => r
                        .get("department")
                        .and_then(Value::as_str)
                        .and_then(|d| departments.iter().position(|x| x == d))
                        .map_or(Value::Null, |i| json!(i + 1)),
                })
                .collect()
        })
        .collect()
}

fn eval(st: &State, q: &Select) -> Result<(Vec<String>, Vec<Value>), String> {
    let mut bound: Vec<Bound> = Vec::new();
    for t in std::iter::once(&q.from).chain(q.joins.iter().map(|j| &j.table)) {
        let table =
            tables::table(&t.name).ok_or_else(|| format!("Invalid object name '{}'.", t.name))?;
        let label = t.alias.clone().unwrap_or_else(|| t.name.clone());
        if bound.iter().any(|b| b.label.eq_ignore_ascii_case(&label)) {
            return Err(format!(
                "The objects \"{label}\" and \"{label}\" in the FROM clause have the same exposed names. Use correlation names to distinguish them."
            ));
        }
        let missing = st
            .settings
            .halo_report_missing_columns
            .iter()
            .filter(|(t, _)| t.eq_ignore_ascii_case(table.name))
            .filter_map(|(_, c)| table.column(c))
            .collect();
        bound.push(Bound {
            table,
            missing,
            label,
            rows: table_rows(st, table),
        });
    }
    // The output columns, bound against every table of the query.
    let mut outputs: Vec<(String, BOperand)> = Vec::new();
    for item in &q.items {
        match item {
            Item::All(None) => {
                for (t, b) in bound.iter().enumerate() {
                    for (i, name) in b.visible() {
                        outputs.push((name.to_string(), BOperand::Col((t, i))));
                    }
                }
            }
            Item::All(Some(q)) => {
                let t = bound
                    .iter()
                    .position(|b| b.label.eq_ignore_ascii_case(q))
                    .ok_or_else(|| {
                        format!("The multi-part identifier \"{q}\" could not be bound.")
                    })?;
                for (i, name) in bound[t].visible() {
                    outputs.push((name.to_string(), BOperand::Col((t, i))));
                }
            }
            Item::Col(o, alias) => {
                let b = bind_operand(&bound, o)?;
                let name = match (alias, &b) {
                    (Some(a), _) => a.clone(),
                    (None, BOperand::Col((t, i))) => bound[*t].table.columns[*i].name.to_string(),
                    (None, BOperand::Lit(_)) => String::new(),
                };
                outputs.push((name, b));
            }
        }
    }
    // Joins, each bound against the tables before it and itself (SQL Server's scoping of ON).
    let mut rows: Vec<Combined> = (0..bound[0].rows.len()).map(|r| vec![Some(r)]).collect();
    for (j, join) in q.joins.iter().enumerate() {
        let t = j + 1;
        let on = bind_expr(&bound[..=t], &join.on)?;
        let mut next = Vec::new();
        for row in rows {
            let mut matched = false;
            for r in 0..bound[t].rows.len() {
                let mut candidate = row.clone();
                candidate.push(Some(r));
                if truth(&bound, &candidate, &on) == Some(true) {
                    matched = true;
                    next.push(candidate);
                }
            }
            if !matched && join.left_outer {
                let mut candidate = row;
                candidate.push(None);
                next.push(candidate);
            }
        }
        rows = next;
    }
    if let Some(f) = &q.filter {
        let f = bind_expr(&bound, f)?;
        rows.retain(|r| truth(&bound, r, &f) == Some(true));
    }
    if !q.order.is_empty() {
        let keys: Vec<(Slot, bool)> = q
            .order
            .iter()
            .map(|(c, desc)| bind_col(&bound, c).map(|s| (s, *desc)))
            .collect::<Result<_, _>>()?;
        rows.sort_by(|a, b| {
            for (slot, desc) in &keys {
                let o = BOperand::Col(*slot);
                let (x, y) = (value(&bound, a, &o), value(&bound, b, &o));
                // NULL sorts first in SQL Server.
                let ord = match (x.is_null(), y.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    _ => compare(x, y).unwrap_or(Ordering::Equal),
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    let mut out: Vec<Value> = Vec::new();
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    for row in &rows {
        let mut obj = serde_json::Map::new();
        for (name, o) in &outputs {
            obj.insert(name.clone(), value(&bound, row, o).clone());
        }
        let obj = Value::Object(obj);
        if q.distinct && seen.insert(obj.to_string(), ()).is_some() {
            continue;
        }
        out.push(obj);
        if q.top.is_some_and(|n| out.len() >= n) {
            break;
        }
    }
    if q.top == Some(0) {
        out.clear();
    }
    Ok((outputs.into_iter().map(|(n, _)| n).collect(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::for_test()
    }

    #[test]
    fn the_references_own_query_runs_with_left_joins() {
        // The real query of halo-api.md 2.3 [LW], as written there (lower-case names, mixed aliases).
        let st = state();
        let (cols, rows) = run(
            &st,
            "SELECT DISTINCT UAzureOID AS azureoid, uemail AS emailAddress, Usite AS site_id, uusername AS displayName,
                    uid AS id, uinactive AS inactive, aarea AS client_id
             FROM USERS LEFT JOIN site ON usite = ssitenum LEFT JOIN area ON sarea = aarea",
        )
        .unwrap();
        assert_eq!(cols[1], "emailAddress");
        assert_eq!(rows.len(), st.halo["Users"].len());
        let megan = rows.iter().find(|r| r["id"] == json!(1301)).unwrap();
        assert_eq!(megan["client_id"], json!(102));
        assert_eq!(megan["site_id"], json!(202.0));
        assert_eq!(megan["inactive"], json!(false));
    }

    #[test]
    fn where_top_order_and_tenant_join() {
        let st = state();
        let (_, rows) = run(
            &st,
            "SELECT TOP 2 a.Aarea AS id FROM AREA a WHERE a.AIsInactive = 0 ORDER BY a.Aarea DESC",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0]["id"].as_i64() > rows[1]["id"].as_i64());
        // Only Fabrikam (102) has a tenant mapping in the small estate.
        let (_, rows) = run(
            &st,
            "SELECT a.Aarea AS id, t.AATAzureTenantId AS tenant FROM AREA a \
             INNER JOIN AreaAzureTenant t ON t.AATAreaId = a.Aarea WHERE t.AATAzureTenantId IS NOT NULL",
        )
        .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["id"], json!(102));
        assert_eq!(
            rows[0]["tenant"],
            json!("f4b1c2d3-8e7a-4c6b-9d5e-2a3b4c5d6e7f")
        );
        let (_, rows) = run(
            &st,
            "select Uid from users where uemail = 'MEGAN.BOWEN@fabrikam.com' or Uid in (1001, 1002)",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].get("Uid").is_some());
    }

    #[test]
    fn errors_are_in_sql_servers_words() {
        let st = state();
        for (sql, want) in [
            ("SELECT nosuch FROM USERS", "Invalid column name 'nosuch'."),
            ("SELECT Uid FROM NOSUCH", "Invalid object name 'NOSUCH'."),
            (
                "SELECT Uid FROM USERS u JOIN SITE s ON x.Usite = s.Ssitenum",
                "The multi-part identifier \"x.Usite\" could not be bound.",
            ),
            (
                "SELECT Uid FROM USERS WHERE",
                "Incorrect syntax near the end of the statement.",
            ),
            (
                "SELECT Uid FROM USERS WHERE Uid = = 1",
                "Incorrect syntax near '='.",
            ),
            (
                "SELECT FROM USERS",
                "Incorrect syntax near the keyword 'FROM'.",
            ),
            (
                "SELECT Uid FROM USERS u, SITE",
                "Incorrect syntax near ','.",
            ),
        ] {
            assert_eq!(run(&st, sql).unwrap_err(), want, "{sql}");
        }
        // A Halo version without a column.
        let mut st = st;
        st.settings.halo_report_missing_columns = vec![("Licence".into(), "lconsumedcount".into())];
        assert_eq!(
            run(&st, "SELECT LID, lconsumedcount FROM Licence").unwrap_err(),
            "Invalid column name 'lconsumedcount'."
        );
        // A column in two joined tables must be qualified.
        let both = "SELECT Aarea FROM AREA a JOIN AREA b ON a.Aarea = b.Aarea";
        assert_eq!(
            run(&st, both).unwrap_err(),
            "Ambiguous column name 'Aarea'."
        );
    }

    #[test]
    fn columns_carry_their_sql_types() {
        let st = state();
        let (_, rows) = run(
            &st,
            "SELECT LID, LPurchaseDate, lautorenew, LCount, Udepartment FROM Licence LEFT JOIN USERS ON 1 = 0",
        )
        .unwrap();
        let r = &rows[0];
        assert!(r["LID"].is_i64() && r["LCount"].is_i64(), "{r}");
        assert!(r["lautorenew"].is_boolean(), "{r}");
        let date = r["LPurchaseDate"].as_str().unwrap();
        assert_eq!(date.len(), 19, "{date}");
        assert!(r["Udepartment"].is_null(), "{r}");
    }
}

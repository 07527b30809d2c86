//! The read models and the SQL behind them, uncached. `views` puts the
//! cache in front of these.
//!
//! "Now" is the trader's latest fill (`as_of`), not the wall clock: a view
//! depends on the rows alone, so a cached answer and a fresh one agree.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::db::{DbError, Sql, cents};

const DAY: i64 = 86_400;

/// Where a trader's fills stand against the broker's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconciliationStatus {
    pub user_id: i64,
    /// The trader's latest fill (unix seconds); ages are measured from it.
    pub as_of: i64,
    pub total: i64,
    pub matched: i64,
    pub breaks: i64,
    pub pending: i64,
    /// `matched / (total - pending)`, 0 when nothing is settled.
    pub match_rate: f64,
    pub traded_notional: f64,
    /// Sum of |ours - broker's| notional over the breaks.
    pub break_notional: f64,
    pub last_reconciled_at: Option<i64>,
    pub oldest_open_item_at: Option<i64>,
    /// Breaks and pending fills by age.
    pub open_items_by_age: Aging,
    /// The symbols with the largest breaks.
    pub breaks_by_symbol: Vec<SymbolBreaks>,
    pub recent_breaks: Vec<Break>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aging {
    pub under_1d: i64,
    pub from_1d_to_7d: i64,
    pub from_7d_to_30d: i64,
    pub over_30d: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolBreaks {
    pub symbol: String,
    pub breaks: i64,
    pub quantity_difference: i64,
    pub notional_difference: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Break {
    pub id: i64,
    pub account: String,
    pub symbol: String,
    pub side: Side,
    pub quantity: i64,
    pub broker_quantity: i64,
    pub price: f64,
    pub broker_price: f64,
    pub trade_ts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }

    fn of(sign: i64) -> Side {
        if sign > 0 { Side::Buy } else { Side::Sell }
    }
}

/// A trader's open positions, marked to the last prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenPositions {
    pub user_id: i64,
    pub as_of: i64,
    pub positions: Vec<Position>,
    pub gross_exposure: f64,
    pub net_exposure: f64,
    pub unrealized_pnl: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub account: String,
    pub symbol: String,
    /// Positive long, negative short.
    pub quantity: i64,
    /// Volume-weighted price of the fills on the position's side.
    pub average_price: f64,
    pub mark_price: f64,
    pub market_value: f64,
    pub unrealized_pnl: f64,
    pub fills: i64,
    pub last_fill_at: i64,
}

/// The risk guards: each limit, how much of it is used, and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardStatus {
    pub user_id: i64,
    pub as_of: i64,
    /// False when any guard is breached.
    pub trading_allowed: bool,
    pub guards: Vec<Guard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    pub name: String,
    pub limit: f64,
    pub current: f64,
    /// `current / limit`.
    pub utilization: f64,
    pub state: GuardState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardState {
    Ok,
    Warning,
    Breached,
}

/// A fill to record, as the write endpoint takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewFill {
    pub account: String,
    pub symbol: String,
    pub side: Side,
    pub quantity: i64,
    pub price: f64,
    /// The broker's side of the fill; ours when absent (a match).
    pub broker_quantity: Option<i64>,
    pub broker_price: Option<f64>,
}

/// A recorded fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    pub id: i64,
    pub user_id: i64,
    pub account: String,
    pub symbol: String,
    pub side: Side,
    pub quantity: i64,
    pub price: f64,
    pub broker_quantity: i64,
    pub broker_price: f64,
    pub status: String,
    pub trade_ts: i64,
}

/// Why a fill cannot be recorded.
#[derive(Debug)]
pub enum WriteError {
    /// The request is wrong (unknown symbol, bad quantity...).
    Invalid(String),
    /// The account is not the trader's.
    NotYourAccount(String),
    Db(DbError),
}

impl From<DbError> for WriteError {
    fn from(e: DbError) -> Self {
        WriteError::Db(e)
    }
}

fn as_of(sql: &mut Sql<'_>, user_id: i64) -> Result<i64, DbError> {
    sql.row(
        "SELECT COALESCE(MAX(trade_ts), 0) FROM reconciliations WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )
}

pub fn reconciliation_status(
    sql: &mut Sql<'_>,
    user_id: i64,
) -> Result<ReconciliationStatus, DbError> {
    let as_of = as_of(sql, user_id)?;
    let (total, matched, breaks, pending, traded, break_notional, last_reconciled) = sql.row(
        "SELECT COUNT(*),
                COALESCE(SUM(status = 'matched'), 0),
                COALESCE(SUM(status = 'break'), 0),
                COALESCE(SUM(status = 'pending'), 0),
                COALESCE(SUM(quantity * price), 0.0),
                COALESCE(SUM(CASE WHEN status = 'break'
                             THEN ABS(quantity * price - broker_quantity * broker_price) END), 0.0),
                MAX(reconciled_ts)
         FROM reconciliations WHERE user_id = ?1",
        [user_id],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, f64>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        },
    )?;
    let (under_1d, from_1d_to_7d, from_7d_to_30d, over_30d, oldest_open) = sql.row(
        "SELECT COALESCE(SUM(?2 - trade_ts < ?3), 0),
                COALESCE(SUM(?2 - trade_ts >= ?3 AND ?2 - trade_ts < 7 * ?3), 0),
                COALESCE(SUM(?2 - trade_ts >= 7 * ?3 AND ?2 - trade_ts < 30 * ?3), 0),
                COALESCE(SUM(?2 - trade_ts >= 30 * ?3), 0),
                MIN(trade_ts)
         FROM reconciliations WHERE user_id = ?1 AND status != 'matched'",
        params![user_id, as_of, DAY],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let breaks_by_symbol = sql.rows(
        "SELECT symbol, COUNT(*), SUM(quantity - broker_quantity),
                SUM(quantity * price - broker_quantity * broker_price) AS difference
         FROM reconciliations WHERE user_id = ?1 AND status = 'break'
         GROUP BY symbol ORDER BY ABS(difference) DESC, symbol LIMIT 10",
        [user_id],
        |r| {
            Ok(SymbolBreaks {
                symbol: r.get(0)?,
                breaks: r.get(1)?,
                quantity_difference: r.get(2)?,
                notional_difference: cents(r.get(3)?),
            })
        },
    )?;
    let recent_breaks = sql.rows(
        "SELECT id, account, symbol, side, quantity, broker_quantity, price, broker_price, trade_ts
         FROM reconciliations WHERE user_id = ?1 AND status = 'break'
         ORDER BY trade_ts DESC, id DESC LIMIT 10",
        [user_id],
        |r| {
            Ok(Break {
                id: r.get(0)?,
                account: r.get(1)?,
                symbol: r.get(2)?,
                side: Side::of(r.get(3)?),
                quantity: r.get(4)?,
                broker_quantity: r.get(5)?,
                price: r.get(6)?,
                broker_price: r.get(7)?,
                trade_ts: r.get(8)?,
            })
        },
    )?;
    let settled = total - pending;
    Ok(ReconciliationStatus {
        user_id,
        as_of,
        total,
        matched,
        breaks,
        pending,
        match_rate: if settled > 0 {
            ratio(matched as f64, settled as f64)
        } else {
            0.0
        },
        traded_notional: cents(traded),
        break_notional: cents(break_notional),
        last_reconciled_at: last_reconciled,
        oldest_open_item_at: oldest_open,
        open_items_by_age: Aging {
            under_1d,
            from_1d_to_7d,
            from_7d_to_30d,
            over_30d,
        },
        breaks_by_symbol,
        recent_breaks,
    })
}

pub fn open_positions(sql: &mut Sql<'_>, user_id: i64) -> Result<OpenPositions, DbError> {
    let as_of = as_of(sql, user_id)?;
    let mut positions = sql.rows(
        "SELECT r.account, r.symbol, SUM(r.side * r.quantity) AS net,
                SUM(CASE WHEN r.side = 1 THEN r.quantity * r.price END) / SUM(CASE WHEN r.side = 1 THEN r.quantity END),
                SUM(CASE WHEN r.side = -1 THEN r.quantity * r.price END) / SUM(CASE WHEN r.side = -1 THEN r.quantity END),
                p.price, COUNT(*), MAX(r.trade_ts)
         FROM reconciliations r JOIN prices p ON p.symbol = r.symbol
         WHERE r.user_id = ?1
         GROUP BY r.account, r.symbol
         HAVING net != 0",
        [user_id],
        |r| {
            let quantity: i64 = r.get(2)?;
            let buys: Option<f64> = r.get(3)?;
            let sells: Option<f64> = r.get(4)?;
            let mark: f64 = r.get(5)?;
            let average = if quantity > 0 { buys } else { sells }.unwrap_or(mark);
            Ok(Position {
                account: r.get(0)?,
                symbol: r.get(1)?,
                quantity,
                average_price: cents(average),
                mark_price: mark,
                market_value: cents(quantity as f64 * mark),
                unrealized_pnl: cents(quantity as f64 * (mark - average)),
                fills: r.get(6)?,
                last_fill_at: r.get(7)?,
            })
        },
    )?;
    positions.sort_by(|a, b| {
        b.market_value
            .abs()
            .total_cmp(&a.market_value.abs())
            .then_with(|| (&a.account, &a.symbol).cmp(&(&b.account, &b.symbol)))
    });
    Ok(OpenPositions {
        user_id,
        as_of,
        gross_exposure: cents(positions.iter().map(|p| p.market_value.abs()).sum()),
        net_exposure: cents(positions.iter().map(|p| p.market_value).sum()),
        unrealized_pnl: cents(positions.iter().map(|p| p.unrealized_pnl).sum()),
        positions,
    })
}

pub fn guard_status(sql: &mut Sql<'_>, user_id: i64) -> Result<GuardStatus, DbError> {
    let as_of = as_of(sql, user_id)?;
    let limits = sql.rows(
        "SELECT name, limit_value FROM guards WHERE user_id = ?1 ORDER BY name",
        [user_id],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)),
    )?;
    let (gross, largest) = sql.row(
        "SELECT COALESCE(SUM(ABS(n.net * p.price)), 0.0), COALESCE(MAX(ABS(n.net * p.price)), 0.0)
         FROM (SELECT symbol, SUM(side * quantity) AS net
               FROM reconciliations WHERE user_id = ?1 GROUP BY symbol) n
         JOIN prices p ON p.symbol = n.symbol",
        [user_id],
        |r| Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?)),
    )?;
    let (daily, open_breaks) = sql.row(
        "SELECT COALESCE(SUM(CASE WHEN trade_ts > ?2 - ?3 THEN quantity * price END), 0.0),
                COALESCE(SUM(status = 'break' AND trade_ts > ?2 - 30 * ?3), 0)
         FROM reconciliations WHERE user_id = ?1 AND trade_ts > ?2 - 30 * ?3",
        params![user_id, as_of, DAY],
        |r| Ok((r.get::<_, f64>(0)?, r.get::<_, i64>(1)?)),
    )?;
    let guards: Vec<Guard> = limits
        .into_iter()
        .map(|(name, limit)| {
            let current = match name.as_str() {
                "gross_exposure" => cents(gross),
                "single_position" => cents(largest),
                "daily_notional" => cents(daily),
                "open_breaks" => open_breaks as f64,
                _ => 0.0,
            };
            let utilization = ratio(current, limit);
            let state = if utilization >= 1.0 {
                GuardState::Breached
            } else if utilization >= 0.8 {
                GuardState::Warning
            } else {
                GuardState::Ok
            };
            Guard {
                name,
                limit,
                current,
                utilization,
                state,
            }
        })
        .collect();
    Ok(GuardStatus {
        user_id,
        as_of,
        trading_allowed: guards.iter().all(|g| g.state != GuardState::Breached),
        guards,
    })
}

/// Records a fill for `user_id`; a fill the broker booked differently is a break.
pub fn record_fill(
    sql: &mut Sql<'_>,
    user_id: i64,
    fill: &NewFill,
    now: i64,
) -> Result<Fill, WriteError> {
    if fill.quantity <= 0 || fill.broker_quantity.is_some_and(|q| q < 0) {
        return Err(WriteError::Invalid("quantity must be positive".into()));
    }
    if !(fill.price.is_finite() && fill.price > 0.0)
        || fill
            .broker_price
            .is_some_and(|p| !(p.is_finite() && p > 0.0))
    {
        return Err(WriteError::Invalid(
            "price must be a positive number".into(),
        ));
    }
    let known_symbol: bool = sql.row(
        "SELECT COUNT(*) > 0 FROM prices WHERE symbol = ?1",
        [&fill.symbol],
        |r| r.get(0),
    )?;
    if !known_symbol {
        return Err(WriteError::Invalid(format!(
            "unknown symbol {:?}",
            fill.symbol
        )));
    }
    let owner: Option<i64> = sql
        .rows(
            "SELECT user_id FROM accounts WHERE id = ?1",
            [&fill.account],
            |r| r.get(0),
        )?
        .pop();
    if owner != Some(user_id) {
        return Err(WriteError::NotYourAccount(fill.account.clone()));
    }
    let price = cents(fill.price);
    let broker_quantity = fill.broker_quantity.unwrap_or(fill.quantity);
    let broker_price = cents(fill.broker_price.unwrap_or(fill.price));
    let status = if broker_quantity == fill.quantity && broker_price == price {
        "matched"
    } else {
        "break"
    };
    // Never before the trader's latest fill: the book stays in time order.
    let trade_ts = now.max(as_of(sql, user_id)? + 1);
    let id = sql.insert(
        "INSERT INTO reconciliations (user_id, account, symbol, side, quantity, price, broker_quantity, broker_price, status, trade_ts, reconciled_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        params![
            user_id,
            fill.account,
            fill.symbol,
            fill.side.sign(),
            fill.quantity,
            price,
            broker_quantity,
            broker_price,
            status,
            trade_ts
        ],
    )?;
    Ok(Fill {
        id,
        user_id,
        account: fill.account.clone(),
        symbol: fill.symbol.clone(),
        side: fill.side,
        quantity: fill.quantity,
        price,
        broker_quantity,
        broker_price,
        status: status.into(),
        trade_ts,
    })
}

/// `a / b` rounded to 4 decimals.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return 0.0;
    }
    (a / b * 10_000.0).round() / 10_000.0
}

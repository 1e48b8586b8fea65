//! A shop's stock per item as its database keeps it (versioned counts, reservations that expire and hand their unit back, paid orders) beside the truth about it: the units each item has, those promised and those paid — so an oversell, or a payment no unit backs, is seen the moment it happens.
//!
//! The database's side is what strategies read and write: `read` (value and version), a blind
//! `write`, a `cas` on the version, the conditional `decrement` (`UPDATE … SET stock = stock − 1
//! WHERE stock > 0`), a `reserve`ation with a TTL. The truth is kept apart from it: a unit is
//! *promised* when a buyer is told it is theirs (`promise`), given back when its reservation
//! expires unpaid (`give_back`), and *paid* at `settle`. With only conditional decrements and
//! reservations, `stock + held == units` for every item at every instant (the tests); a blind
//! write after a stale read breaks it, and `promise` then reports by how much.

use crate::parts::store::Store;
use faultline_core::{Micros, Time};

/// One item's truth: its units, those promised (in a cart or paid), those paid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sale {
    pub units: i64,
    pub held: i64,
    pub paid: i64,
}

/// What became of a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Paid. `late`: its reservation had expired (its unit given back, maybe taken again), and
    /// was re-reserved if rechecking; by how many the item is now `oversold` (promised past its
    /// units) and `overpaid` (paid past its units), if it is.
    Paid { late: bool, oversold: Option<i64>, overpaid: Option<i64> },
    /// Its reservation had expired and no unit was left to re-reserve: refused (refunded).
    Refused,
}

/// Items numbered from 0, each with its stock row, plus the reservations of orders.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    stock: Store<u32, i64>,
    reservations: Store<u64, u32>,
    sales: Vec<Sale>,
}

impl Inventory {
    /// Puts `item` on sale with `units` (items skipped before it get none).
    pub fn put_on_sale(&mut self, item: u32, units: i64) {
        self.stock.put(item, units);
        self.sales.resize(self.sales.len().max(item as usize + 1), Sale::default());
        self.sales[item as usize] = Sale { units, held: 0, paid: 0 };
    }
    /// The latest item put on sale and its truth.
    pub fn current(&self) -> Option<(u32, &Sale)> {
        self.sales.last().map(|s| (self.sales.len() as u32 - 1, s))
    }
    pub fn sales(&self) -> &[Sale] {
        &self.sales
    }
    /// The stock row: value and version (0 and 0 for an item never on sale).
    pub fn read(&self, item: u32) -> (i64, u64) {
        self.stock.get(&item, Time(0)).map_or((0, 0), |(v, version)| (*v, version))
    }
    /// A blind UPDATE of a value computed elsewhere.
    pub fn write(&mut self, item: u32, value: i64) {
        self.stock.put(item, value);
    }
    /// An UPDATE that holds only if the row is still at `version`.
    pub fn cas(&mut self, item: u32, version: u64, value: i64) -> bool {
        self.stock.cas(item, version, value, Time(0)).is_ok()
    }
    /// UPDATE … SET stock = stock − 1 WHERE stock > 0: whether a row changed.
    pub fn decrement(&mut self, item: u32) -> bool {
        let ok = self.read(item).0 > 0;
        if ok {
            self.stock.update(item, Time(0), |v| v.copied().unwrap_or(0) - 1);
        }
        ok
    }
    /// Holds `item` for `order` until `now + ttl_us` (the unit is decremented already).
    pub fn reserve(&mut self, order: u64, item: u32, now: Time, ttl_us: Micros) {
        self.reservations.put_ttl(order, item, now, ttl_us);
    }
    /// The truth: one more unit of `item` promised; `Some(by how many)` if past its units.
    pub fn promise(&mut self, item: u32) -> Option<i64> {
        let sale = &mut self.sales[item as usize];
        sale.held += 1;
        (sale.held > sale.units).then_some(sale.held - sale.units)
    }
    /// An expired, unpaid reservation's unit goes back on sale, once: its item, if it did.
    pub fn give_back(&mut self, order: u64, now: Time) -> Option<u32> {
        let item = self.reservations.take_expired(&order, now)?;
        self.stock.update(item, Time(0), |v| v.copied().unwrap_or(0) + 1);
        self.sales[item as usize].held -= 1;
        Some(item)
    }
    /// Order `order`'s payment for `item` at `now`. `reserved`: it took a reservation with a TTL;
    /// if that expired, `recheck` re-reserves a unit (or refuses), else the payment is taken as
    /// is — for a unit that may have been sold again (then `promise` reports the oversell).
    pub fn settle(&mut self, order: u64, item: u32, reserved: bool, recheck: bool, now: Time) -> Settled {
        self.give_back(order, now);
        let late = reserved && self.reservations.delete(&order, now).is_none();
        if late && recheck && !self.decrement(item) {
            return Settled::Refused;
        }
        let oversold = if late { self.promise(item) } else { None };
        let sale = &mut self.sales[item as usize];
        sale.paid += 1;
        Settled::Paid { late, oversold, overpaid: (sale.paid > sale.units).then_some(sale.paid - sale.units) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn decrements_and_reservations_conserve_the_units() {
        // Random decrements, reservations, expiries and payments (late ones rechecked), many
        // reservations left to expire: at every step stock + held == units, nothing is promised
        // past the units, paid ≤ held.
        let (mut inv, mut rng) = (Inventory::default(), Rng::new(3));
        inv.put_on_sale(0, 50);
        let mut open: Vec<(u64, Time)> = Vec::new();
        for step in 0..20_000u64 {
            let now = Time(step * 10);
            match rng.below(3) {
                0 if inv.decrement(0) => {
                    assert_eq!(inv.promise(0), None);
                    inv.reserve(step, 0, now, 500);
                    open.push((step, now));
                }
                1 if !open.is_empty() => {
                    let (order, _) = open.swap_remove(rng.below(open.len() as u64) as usize);
                    let settled = inv.settle(order, 0, true, true, now);
                    assert!(matches!(settled, Settled::Refused | Settled::Paid { oversold: None, overpaid: None, .. }));
                }
                _ => open.retain(|&(order, at)| now < at.plus(500) || inv.give_back(order, now).is_none()),
            }
            let s = &inv.sales()[0];
            assert_eq!(inv.read(0).0 + s.held, s.units, "step {step}");
            assert!(s.paid <= s.held && s.held <= s.units);
        }
        // Abandoned reservations came back and sold again: in the end every unit is paid.
        assert_eq!(inv.sales()[0], Sale { units: 50, held: 50, paid: 50 });
    }

    #[test]
    fn a_stale_write_or_an_unchecked_late_payment_oversells() {
        let mut inv = Inventory::default();
        inv.put_on_sale(2, 1);
        assert_eq!((inv.sales().len(), inv.read(1)), (3, (0, 0)), "items skipped get nothing");
        // Two read 1, both write 0: the second promise is one over.
        let (v, version) = inv.read(2);
        inv.write(2, v - 1);
        assert_eq!(inv.promise(2), None);
        assert!(!inv.cas(2, version, v - 1), "a version check would have caught it");
        inv.write(2, v - 1);
        assert_eq!(inv.promise(2), Some(1));
        // A reservation expires, its unit is taken again; the late payment, unchecked, is one over.
        let mut inv = Inventory::default();
        inv.put_on_sale(0, 1);
        assert!(inv.decrement(0));
        inv.promise(0);
        inv.reserve(7, 0, Time(0), 100);
        assert_eq!(inv.give_back(7, Time(100)), Some(0));
        assert!(inv.decrement(0));
        assert_eq!(inv.promise(0), None);
        assert_eq!(inv.settle(7, 0, true, true, Time(150)), Settled::Refused, "rechecked: nothing left");
        let paid = inv.settle(7, 0, true, false, Time(150));
        assert_eq!(paid, Settled::Paid { late: true, oversold: Some(1), overpaid: None });
        assert_eq!(inv.sales()[0], Sale { units: 1, held: 2, paid: 1 });
    }
}

//! Microsoft product names, from Microsoft's "Product names and service plan identifiers for licensing"
//! table (`data/microsoft-licensing-products.csv`, embedded at build time; see `data/README.md`).
//!
//! Keys: `String_Id` = Graph `skuPartNumber` (e.g. `SPB`), `GUID` = Graph `skuId`, and
//! `Product_Display_Name` (e.g. "Microsoft 365 Business Premium"). Microsoft's full download has one row per
//! SKU and service plan, so rows are deduplicated by `GUID` (the first row of a GUID wins).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// The embedded CSV, exactly as Microsoft publishes it.
const CSV: &str = include_str!("../data/microsoft-licensing-products.csv");

/// One SKU of Microsoft's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// `GUID`, lower-case (Graph `skuId`).
    pub sku_id: String,
    /// `String_Id`, trimmed (Graph `skuPartNumber`).
    pub part_number: String,
    /// `Product_Display_Name`, trimmed.
    pub name: String,
}

struct Catalog {
    products: Vec<Product>,
    by_sku_id: HashMap<String, usize>,
    /// Upper-cased part number -> first product with it (a few part numbers name two GUIDs, e.g. `MCOPSTN5`).
    by_part: HashMap<String, usize>,
    /// Normalised product name -> the product, or `None` when several SKUs share that name (ambiguous).
    by_name: HashMap<String, Option<usize>>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| Catalog::from_csv(CSV));

impl Catalog {
    fn from_csv(text: &str) -> Catalog {
        let mut rows = parse_csv(text).into_iter();
        let header = rows.next().unwrap_or_default();
        let col = |name: &str| header.iter().position(|h| h.trim() == name);
        let mut catalog = Catalog {
            products: Vec::new(),
            by_sku_id: HashMap::new(),
            by_part: HashMap::new(),
            by_name: HashMap::new(),
        };
        // A file without the expected columns gives an empty catalog (names then fall back to offer names);
        // the embedded file is checked by the tests below.
        let (Some(part_col), Some(guid_col), Some(name_col)) =
            (col("String_Id"), col("GUID"), col("Product_Display_Name"))
        else {
            return catalog;
        };
        for row in rows {
            let field = |i: usize| row.get(i).map_or("", |s| s.trim());
            let sku_id = field(guid_col).to_ascii_lowercase();
            let part_number = field(part_col).to_string();
            let name = field(name_col).to_string();
            if sku_id.is_empty() || catalog.by_sku_id.contains_key(&sku_id) {
                continue;
            }
            let idx = catalog.products.len();
            catalog.by_sku_id.insert(sku_id.clone(), idx);
            if !part_number.is_empty() {
                catalog
                    .by_part
                    .entry(part_number.to_ascii_uppercase())
                    .or_insert(idx);
            }
            if !name.is_empty() {
                catalog
                    .by_name
                    .entry(normalise_name(&name))
                    .and_modify(|e| *e = None)
                    .or_insert(Some(idx));
            }
            catalog.products.push(Product {
                sku_id,
                part_number,
                name,
            });
        }
        catalog
    }

    fn by_sku_id(&self, sku_id: &str) -> Option<&Product> {
        self.by_sku_id
            .get(&sku_id.trim().to_ascii_lowercase())
            .map(|&i| &self.products[i])
    }

    fn by_part(&self, part: &str) -> Option<&Product> {
        self.by_part
            .get(&part.trim().to_ascii_uppercase())
            .map(|&i| &self.products[i])
    }
}

/// Parses CSV text into rows of fields: RFC 4180 quoting (fields in double quotes may hold commas, line
/// breaks and doubled quotes), `\n` or `\r\n` line ends, a leading UTF-8 byte-order mark ignored. Blank
/// lines are skipped. Lenient on malformed input: an unterminated quote takes the rest of the text, a quote
/// inside an unquoted field is kept as a character.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    // Whether the current field started with a quote (so `""` is an empty field, not nothing).
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let end_row = |row: &mut Vec<String>, rows: &mut Vec<Vec<String>>| {
        let done = std::mem::take(row);
        if !(done.len() == 1 && done[0].is_empty()) {
            rows.push(done);
        }
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                row.push(std::mem::take(&mut field));
                quoted = false;
                end_row(&mut row, &mut rows);
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || quoted || !row.is_empty() {
        row.push(field);
        end_row(&mut row, &mut rows);
    }
    rows
}

/// Normalises a product name for comparison: lower-case, every run of characters that are not letters or
/// digits becomes one space, trimmed. Qualifiers stay significant: "Microsoft 365 Business Premium (no
/// Teams)" normalises to "microsoft 365 business premium no teams", which differs from the plain product.
pub fn normalise_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_space = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

/// Microsoft's product name for a Graph `skuId` (any case).
pub fn product_name_by_sku_id(sku_id: &str) -> Option<&'static str> {
    CATALOG.by_sku_id(sku_id).map(|p| p.name.as_str())
}

/// Microsoft's product name for a `skuPartNumber` (any case).
pub fn product_name_by_part_number(part: &str) -> Option<&'static str> {
    CATALOG.by_part(part).map(|p| p.name.as_str())
}

/// The `skuPartNumber` of a Graph `skuId` (any case).
pub fn part_number_by_sku_id(sku_id: &str) -> Option<&'static str> {
    CATALOG.by_sku_id(sku_id).map(|p| p.part_number.as_str())
}

/// The `skuId` (lower-case) of a `skuPartNumber` (any case). Where a part number names several GUIDs, the
/// first row of the table wins.
pub fn sku_id_by_part_number(part: &str) -> Option<&'static str> {
    CATALOG.by_part(part).map(|p| p.sku_id.as_str())
}

/// The SKU (`(sku_id, part_number)`) whose product name equals `name` after [`normalise_name`]. Only an
/// exact normalised match counts; a name several SKUs share (Microsoft's table has a few, e.g. government
/// variants) is ambiguous and gives `None` rather than a guess.
pub fn sku_by_product_name(name: &str) -> Option<(&'static str, &'static str)> {
    let key = normalise_name(name);
    if key.is_empty() {
        return None;
    }
    let idx = (*CATALOG.by_name.get(&key)?)?;
    let p = &CATALOG.products[idx];
    Some((p.sku_id.as_str(), p.part_number.as_str()))
}

/// Every product of the table, deduplicated by `GUID`, in file order.
pub fn products() -> &'static [Product] {
    &CATALOG.products
}

/// The name to show for a product: an override from `[licences] names` keyed by part number or sku id (keys
/// compared case-insensitively), else Microsoft's name by sku id, then by part number, else the offer name,
/// else the part number, else the sku id, else "Unknown Microsoft product".
pub fn resolve_name(
    part: Option<&str>,
    sku_id: Option<&str>,
    offer_name: &str,
    overrides: &BTreeMap<String, String>,
) -> String {
    let part = part.map(str::trim).filter(|s| !s.is_empty());
    let sku_id = sku_id.map(str::trim).filter(|s| !s.is_empty());
    for key in [part, sku_id].into_iter().flatten() {
        if let Some(name) = overrides
            .iter()
            .find(|(k, v)| k.trim().eq_ignore_ascii_case(key) && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
        {
            return name.to_string();
        }
    }
    if let Some(name) = sku_id.and_then(product_name_by_sku_id) {
        return name.to_string();
    }
    if let Some(name) = part.and_then(product_name_by_part_number) {
        return name.to_string();
    }
    let offer_name = offer_name.trim();
    if !offer_name.is_empty() {
        return offer_name.to_string();
    }
    part.or(sku_id)
        .map_or_else(|| "Unknown Microsoft product".to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPB_ID: &str = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46";

    #[test]
    fn embedded_table_parses_and_is_deduplicated_by_guid() {
        let products = products();
        assert!(products.len() > 500, "only {} products", products.len());
        let mut ids: Vec<&str> = products.iter().map(|p| p.sku_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), products.len());
        assert!(products.iter().all(|p| !p.name.is_empty()));
    }

    #[test]
    fn real_rows_resolve_both_ways() {
        assert_eq!(
            product_name_by_part_number("SPB"),
            Some("Microsoft 365 Business Premium")
        );
        assert_eq!(
            product_name_by_sku_id(&SPB_ID.to_uppercase()),
            Some("Microsoft 365 Business Premium")
        );
        assert_eq!(part_number_by_sku_id(SPB_ID), Some("SPB"));
        assert_eq!(sku_id_by_part_number("spb"), Some(SPB_ID));
        assert_eq!(
            product_name_by_part_number("O365_BUSINESS_ESSENTIALS"),
            Some("Microsoft 365 Business Basic")
        );
        assert_eq!(
            product_name_by_sku_id("4b9405b0-7788-4568-add1-99614e613b69"),
            Some("Exchange Online (Plan 1)")
        );
        assert_eq!(product_name_by_part_number("NOT_A_REAL_SKU"), None);
    }

    #[test]
    fn quoted_names_with_commas_are_whole() {
        assert_eq!(
            product_name_by_part_number("CRM_AUTO_ROUTING_ADDON"),
            Some(
                "Dynamics 365 Field Service, Enterprise Edition - Resource Scheduling Optimization"
            )
        );
    }

    #[test]
    fn sku_by_product_name_is_exact_after_normalising() {
        assert_eq!(
            sku_by_product_name("microsoft 365 business premium"),
            Some((SPB_ID, "SPB"))
        );
        assert_eq!(
            sku_by_product_name("Exchange Online Plan 1"),
            Some(("4b9405b0-7788-4568-add1-99614e613b69", "EXCHANGESTANDARD"))
        );
        // "(no Teams)" is part of the name: it names another SKU.
        let no_teams = sku_by_product_name("Microsoft 365 Business Premium (no Teams)");
        assert!(no_teams.is_some());
        assert_ne!(no_teams, Some((SPB_ID, "SPB")));
        // No prefix or fuzzy matching.
        assert_eq!(sku_by_product_name("Microsoft 365 Business"), None);
        assert_eq!(sku_by_product_name(""), None);
        // Two SKUs share this name: ambiguous, no guess.
        assert_eq!(
            sku_by_product_name(
                "Dynamics 365 for Case Management, Enterprise Edition for Government"
            ),
            None
        );
    }

    #[test]
    fn resolve_name_order() {
        let mut overrides = BTreeMap::new();
        overrides.insert("spb".to_string(), "M365 Business Premium".to_string());
        assert_eq!(
            resolve_name(Some("SPB"), None, "Offer", &overrides),
            "M365 Business Premium"
        );
        overrides.clear();
        overrides.insert(SPB_ID.to_uppercase(), "By id".to_string());
        assert_eq!(
            resolve_name(Some("SPB"), Some(SPB_ID), "Offer", &overrides),
            "By id"
        );
        overrides.clear();
        assert_eq!(
            resolve_name(Some("SPB"), Some(SPB_ID), "Offer", &overrides),
            "Microsoft 365 Business Premium"
        );
        assert_eq!(
            resolve_name(Some("EXCHANGESTANDARD"), None, "Offer", &overrides),
            "Exchange Online (Plan 1)"
        );
        assert_eq!(
            resolve_name(Some("CONTOSO_CUSTOM"), None, " Contoso Thing ", &overrides),
            "Contoso Thing"
        );
        assert_eq!(
            resolve_name(Some("CONTOSO_CUSTOM"), None, "", &overrides),
            "CONTOSO_CUSTOM"
        );
        assert_eq!(
            resolve_name(None, None, "", &overrides),
            "Unknown Microsoft product"
        );
    }

    #[test]
    fn csv_parser_handles_quotes_bom_and_line_ends() {
        let text =
            "\u{feff}a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\r\n\r\n\"multi\nline\",2,3\nlast,\"\",z";
        assert_eq!(
            parse_csv(text),
            vec![
                vec!["a", "b", "c"],
                vec!["x, y", "say \"hi\"", ""],
                vec!["multi\nline", "2", "3"],
                vec!["last", "", "z"],
            ]
        );
        // Malformed: unterminated quote takes the rest, no panic.
        assert_eq!(parse_csv("a,\"b,c"), vec![vec!["a", "b,c"]]);
        assert!(parse_csv("").is_empty());
    }

    #[test]
    fn full_microsoft_download_shape_is_deduplicated() {
        let text = "\u{feff}Product_Display_Name,String_Id,GUID,Service_Plan_Name,Service_Plan_Id,Service_Plans_Included_Friendly_Names\r\n\
            Microsoft 365 Business Premium,SPB,CBDC14AB-d96c-4c30-b9f4-6ada7cdc1d46,AAD_SMB,de377cbc,\"Azure, SMB\"\r\n\
            Microsoft 365 Business Premium,SPB,cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46,EXCHANGE_S_STANDARD,9aaf7827,Exchange\r\n\
            Government Thing,RIGHTSMANAGEMENT_CE_GOV\t,11111111-0000-0000-0000-000000000000,X,Y,Z\r\n";
        let c = Catalog::from_csv(text);
        assert_eq!(c.products.len(), 2);
        assert_eq!(c.products[0].sku_id, SPB_ID);
        assert_eq!(
            c.by_part("rightsmanagement_ce_gov")
                .map(|p| p.name.as_str()),
            Some("Government Thing")
        );
        assert!(
            Catalog::from_csv("no,such,columns\n1,2,3\n")
                .products
                .is_empty()
        );
    }

    #[test]
    fn normalise_name_folds_case_and_punctuation() {
        assert_eq!(
            normalise_name("  Exchange Online (Plan 1) "),
            "exchange online plan 1"
        );
        assert_eq!(
            normalise_name("Enterprise Mobility + Security E3"),
            "enterprise mobility security e3"
        );
    }
}

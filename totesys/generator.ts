/**
 * A deterministic, realistic totesys business: the rows `totes seed` loads and the changes
 * `totes simulate` makes, both following the data profile in shared/reference/totesys.md §1.
 * Pure: no database, no clock, no Math.random. The same seed gives the same rows on every machine,
 * so tests can compare hashes and benchmarks can compare runs.
 */
import type { TotesysTable } from '../core/totesys-tables';
import { PAYMENT_TYPE_NAMES, type PaymentTypeName, type TransactionType } from './schema';

// ---------------------------------------------------------------------------------------------
// PRNG: sfc32 seeded through cyrb128 (both public domain, 32-bit integer maths only, so the
// sequence is identical on every JavaScript engine). Streams are named so that, e.g., the fixed
// tables do not change when --scale changes how many orders are drawn.

export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max], both inclusive. */
  int(min: number, max: number): number;
  chance(probability: number): boolean;
  pick<T>(items: readonly T[]): T;
}

function cyrb128(input: string): [number, number, number, number] {
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < input.length; i++) {
    const k = input.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

/** An independent random stream for (seed, stream name). */
export function createRng(seed: number, stream: string): Rng {
  let [a, b, c, d] = cyrb128(`${seed}/${stream}`);
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // The first outputs of a freshly seeded sfc32 are poorly mixed.
  for (let i = 0; i < 12; i++) next();
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (probability) => next() < probability,
    pick: (items) => items[Math.floor(next() * items.length)]!,
  };
}

function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Rows, as the source holds them. Timestamps are naive `YYYY-MM-DD HH:MM:SS.mmm` text (the source
// is `timestamp(3)` without time zone), money is exact decimal text, agreed dates are text.

export interface AddressRow {
  address_id: number;
  address_line_1: string;
  address_line_2: string | null;
  district: string | null;
  city: string;
  postal_code: string;
  country: string;
  phone: string;
  created_at: string;
  last_updated: string;
}
export interface CounterpartyRow {
  counterparty_id: number;
  counterparty_legal_name: string;
  legal_address_id: number;
  commercial_contact: string | null;
  delivery_contact: string | null;
  created_at: string;
  last_updated: string;
}
export interface CurrencyRow {
  currency_id: number;
  currency_code: string;
  created_at: string;
  last_updated: string;
}
export interface DepartmentRow {
  department_id: number;
  department_name: string;
  location: string | null;
  manager: string | null;
  created_at: string;
  last_updated: string;
}
export interface DesignRow {
  design_id: number;
  created_at: string;
  design_name: string;
  file_location: string;
  file_name: string;
  last_updated: string;
}
export interface StaffRow {
  staff_id: number;
  first_name: string;
  last_name: string;
  department_id: number;
  email_address: string;
  created_at: string;
  last_updated: string;
}
export interface PaymentTypeRow {
  payment_type_id: number;
  payment_type_name: PaymentTypeName;
  created_at: string;
  last_updated: string;
}
export interface SalesOrderRow {
  sales_order_id: number;
  created_at: string;
  last_updated: string;
  design_id: number;
  staff_id: number;
  counterparty_id: number;
  units_sold: number;
  unit_price: string;
  currency_id: number;
  agreed_delivery_date: string;
  agreed_payment_date: string;
  agreed_delivery_location_id: number;
}
export interface PurchaseOrderRow {
  purchase_order_id: number;
  created_at: string;
  last_updated: string;
  staff_id: number;
  counterparty_id: number;
  item_code: string;
  item_quantity: number;
  item_unit_price: string;
  currency_id: number;
  agreed_delivery_date: string;
  agreed_payment_date: string;
  agreed_delivery_location_id: number;
}
export interface TransactionRow {
  transaction_id: number;
  transaction_type: TransactionType;
  sales_order_id: number | null;
  purchase_order_id: number | null;
  created_at: string;
  last_updated: string;
}
export interface PaymentRow {
  payment_id: number;
  created_at: string;
  last_updated: string;
  transaction_id: number;
  counterparty_id: number;
  payment_amount: string;
  currency_id: number;
  payment_type_id: number;
  paid: boolean;
  payment_date: string;
  company_ac_number: number;
  counterparty_ac_number: number;
}

export interface TotesysRowMap {
  address: AddressRow;
  counterparty: CounterpartyRow;
  currency: CurrencyRow;
  department: DepartmentRow;
  design: DesignRow;
  staff: StaffRow;
  payment_type: PaymentTypeRow;
  sales_order: SalesOrderRow;
  purchase_order: PurchaseOrderRow;
  transaction: TransactionRow;
  payment: PaymentRow;
}

/** Rows for some tables; every row's references point at rows in this or an earlier batch. */
export type TotesysBatch = { [T in TotesysTable]?: TotesysRowMap[T][] };

// ---------------------------------------------------------------------------------------------
// The data profile.

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** When the real totesys was first loaded; the fixed tables carry this created_at. */
const EPOCH_MS = Date.UTC(2022, 10, 3, 14, 20, 49, 962);
/** Counterparties and staff were loaded 1.6 s after the other fixed tables. */
const PEOPLE_LOADED_MS = EPOCH_MS + 1_601;
/** The first orders came 2 s after that. */
const FIRST_ORDER_MS = PEOPLE_LOADED_MS + 623;
/** The profile's "early 2025": the export the numbers come from was taken on 2025-02-28. */
const PROFILE_END_MS = Date.UTC(2025, 1, 28, 19, 0, 0, 0);
/** Orders arrive on weekdays in office hours. */
const OFFICE_OPENS_MS = 8 * HOUR_MS;
const OFFICE_CLOSES_MS = 19 * HOUR_MS;
/** Order volume grew from a trickle to its steady rate over the first ~80 days. */
const RAMP_UP_DAYS = 80;
/** Designs in the catalogue when the system went live (the rest arrive over time, ~20 a month). */
const LAUNCH_DESIGNS = 20;

/** Rows at scale 1; --scale multiplies the growing tables only. */
const SCALE_1_ROWS = { design: 540, sales_order: 13_000, purchase_order: 5_300 } as const;

const CURRENCY_CODES = ['GBP', 'USD', 'EUR'] as const;
const ADDRESS_COUNT = 30;
const COUNTERPARTY_COUNT = 20;
const STAFF_COUNT = 20;

/** Department 4's location is misspelt "Leds" in the real data; kept, as the pipeline must carry it. */
const DEPARTMENTS = [
  ['Sales', 'Manchester', 'Richard Roma'],
  ['Purchasing', 'Manchester', 'Naomi Lapaglia'],
  ['Production', 'Leeds', 'Chester Ming'],
  ['Dispatch', 'Leds', 'Mark Hanna'],
  ['Finance', 'Manchester', 'Jordan Belfort'],
  ['Facilities', 'Manchester', 'Shelley Levene'],
  ['Communications', 'Leeds', 'Ann Blake'],
  ['HR', 'Leeds', 'James Link'],
] as const;
/** What a department may be renamed to (index = department_id - 1). */
const DEPARTMENT_NAMES = [
  ['Sales', 'Sales & Marketing'],
  ['Purchasing', 'Procurement'],
  ['Production', 'Manufacturing'],
  ['Dispatch', 'Logistics'],
  ['Finance', 'Accounts'],
  ['Facilities', 'Estates'],
  ['Communications', 'Marketing'],
  ['HR', 'People'],
] as const;
const LOCATIONS = ['Manchester', 'Leeds', 'Leds', 'Sheffield'] as const;

// Names include apostrophes and hyphens on purpose: CSV and SQL quoting must survive them.
// prettier-ignore
const FIRST_NAMES = [
  'Jeremie', 'Deron', 'Jeanette', 'Ana', 'Magdalena', 'Korey', 'Raphael', 'Oswaldo', 'Brody', 'Jazmyn',
  'Meda', 'Imani', 'Stan', 'Rigoberto', 'Tom', 'Jett', 'Irving', 'Tomasa', 'Pierre', 'Flavio', 'Melba',
  'Jean', 'Homer', 'Florence', 'Emily', 'Sheryl', 'Glen', 'Marcus', 'Sherry', 'Laura', 'Pearl', 'Sophie',
  'Micheal', 'Lucy', 'Alfredo', 'Christy', 'Dewey', 'Rosa', 'Andrea', 'Gregg', 'Olivia', 'Warren',
] as const;
// prettier-ignore
const SURNAMES = [
  'Franey', 'Beier', 'Erdman', 'Glover', 'Zieme', 'Kreiger', 'Rippin', 'Bergstrom', 'Ratke', 'Kuhn',
  'Cremin', 'Walker', 'Lehner', 'VonRueden', 'Gutkowski', 'Parisian', "O'Keefe", 'Moore', 'Sauer',
  'Kulas', 'Leannon', 'Predovic', 'Morar', 'Fahey', 'Armstrong', 'Kohler', 'Frami', 'Yundt', 'Mraz',
  'Padberg', 'Lueilwitz', 'Grant', 'Lakin', 'Bosco', 'Corkery', 'Nienow', 'Keeling', 'Emmerich', 'Hand',
  'Krajcik', 'Hintz', 'Hayes', 'Rohan', 'Hartmann', 'Kihn', 'Ondricka', 'Conroy', 'Turcotte', 'Watsica',
  "O'Hara", 'Runolfsdottir', 'Schultz-Ebert',
] as const;
const TITLES = ['Mr. ', 'Mrs. ', 'Ms. ', 'Dr. ', '', '', '', '', '', ''] as const;
// prettier-ignore
const NAME_SUFFIXES = [' Jr.', ' II', ' III', ' PhD', ' DDS', ' DVM', '', '', '', '', '', '', '', ''] as const;
const COMPANY_SUFFIXES = ['and Sons', 'Inc', 'LLC', 'Group'] as const;
// prettier-ignore
const STREET_SUFFIXES = [
  'Via', 'Cliffs', 'Fort', 'Skyway', 'Track', 'Island', 'Ways', 'Common', 'Garden', 'Flat', 'Mission',
  'Expressway', 'Dale', 'Extension', 'Drives', 'Cliff', 'Corner', 'Landing', 'Ridge', 'Streets', 'Spring',
  'Freeway', 'Inlet', 'Branch', 'View', 'Lock', 'Heights', 'Turnpike', 'Circles', 'Radial', 'Glens',
] as const;
// prettier-ignore
const DISTRICTS = [
  'Avon', 'Bedfordshire', 'Buckinghamshire', 'Borders', 'Berkshire', 'Cambridgeshire', 'Cheshire',
] as const;
// prettier-ignore
const CITIES = [
  'New Patienceburgh', 'Aliso Viejo', 'Lake Charles', 'Olsonside', 'Fort Shadburgh', 'Kendraburgh',
  'North Deshaun', 'Suffolk', 'New Tyra', 'Beaulahcester', 'Corpus Christi', 'Pricetown', 'Shanahanview',
  'Maggiofurt', 'East Bobbie', 'South Wyatt', 'Hackensack', 'Lake Arne', 'West Briellecester', 'Pueblo',
  'Fresno', 'Sayreville', 'Derekport', 'New Torrance', 'East Arvel', 'Napa', 'Oakland Park', 'Utica',
] as const;
// prettier-ignore
const COUNTRIES = [
  'Turkey', 'San Marino', 'Samoa', 'Republic of Korea', 'Bosnia and Herzegovina', 'Zimbabwe',
  'Faroe Islands', 'United Kingdom', 'Australia', "Democratic People's Republic of Korea", 'Japan',
  'Tajikistan', 'Bouvet Island (Bouvetoya)', 'Iraq', 'Heard Island and McDonald Islands', 'Iceland',
  'Indonesia', 'Kiribati', 'Sierra Leone', 'Bolivia', 'Svalbard & Jan Mayen Islands', 'Papua New Guinea',
  'Antigua and Barbuda', 'Sudan', 'American Samoa', 'Guam', 'Austria', 'Congo', 'Falkland Islands (Malvinas)',
] as const;
// prettier-ignore
const MATERIALS = [
  'Frozen', 'Soft', 'Plastic', 'Concrete', 'Steel', 'Granite', 'Bronze', 'Cotton', 'Metal', 'Rubber',
  'Wooden', 'Fresh',
] as const;
// prettier-ignore
const FILE_LOCATIONS = [
  '/net', '/usr/share', '/usr/local/src', '/usr/libexec', '/usr', '/selinux', '/usr/ports', '/home/user/dir',
  '/opt', '/etc/mail', '/usr/libdata', '/opt/sbin', '/opt/lib', '/lost+found', '/lib', '/etc/ppp',
  '/etc/periodic', '/etc', '/bin', '/var/tmp', '/usr/local/bin', '/usr/X11R6', '/sys', '/private',
  '/boot/defaults', '/Library', '/var/log', '/etc/namedb', '/Users', '/System', '/var', '/root', '/dev',
] as const;
const STREET_NAMES = [...FIRST_NAMES, ...SURNAMES];
const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

// ---------------------------------------------------------------------------------------------
// Small value makers.

/** `2022-11-03 14:20:49.962`: ms since 1970 read as a naive (zone-less) wall-clock time. */
function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
}

function formatDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Exact decimal text for an amount in cents (floats would lose pennies). */
export function formatCents(cents: number): string {
  return `${Math.trunc(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}

const startOfDay = (ms: number) => ms - (ms % DAY_MS);

function chars(rng: Rng, alphabet: string, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[rng.int(0, alphabet.length - 1)];
  return out;
}

function digits(rng: Rng, length: number): string {
  return chars(rng, '0123456789', length);
}

function personName(rng: Rng): string {
  return `${rng.pick(TITLES)}${rng.pick(FIRST_NAMES)} ${rng.pick(SURNAMES)}${rng.pick(NAME_SUFFIXES)}`;
}

function phoneNumber(rng: Rng): string {
  return `${digits(rng, 4)} ${digits(rng, 6)}`;
}

function streetName(rng: Rng): string {
  return `${rng.pick(STREET_NAMES)} ${rng.pick(STREET_SUFFIXES)}`;
}

/** `wooden-20220717-npgz.json`: the material, a date in 2020–2024, four random characters. */
function designFileName(rng: Rng, designName: string): string {
  const day = formatDate(Date.UTC(2020, 0, 1) + rng.int(0, 1826) * DAY_MS).replace(/-/g, '');
  return `${designName.toLowerCase()}-${day}-${chars(rng, LOWER_ALNUM, 4)}.json`;
}

/** Each counterparty pays from one account; the number is a pure function of (seed, id). */
function counterpartyAccountNumber(seed: number, counterpartyId: number): number {
  return createRng(seed, `counterparty-account/${counterpartyId}`).int(10_000_000, 99_999_999);
}

// ---------------------------------------------------------------------------------------------
// The fixed tables: the same at every scale.

function generateAddresses(rng: Rng, createdAt: string): AddressRow[] {
  return Array.from({ length: ADDRESS_COUNT }, (_, i) => ({
    address_id: i + 1,
    address_line_1: `${rng.int(1, 99_999)} ${streetName(rng)}`,
    address_line_2: rng.chance(0.3) ? streetName(rng) : null,
    district: rng.chance(0.55) ? rng.pick(DISTRICTS) : null,
    city: rng.pick(CITIES),
    postal_code: rng.chance(0.5) ? digits(rng, 5) : `${digits(rng, 5)}-${digits(rng, 4)}`,
    country: rng.pick(COUNTRIES),
    phone: phoneNumber(rng),
    created_at: createdAt,
    last_updated: createdAt,
  }));
}

/** Every third name is "A, B and C" so names with commas are always present, as in the real data. */
function companyName(rng: Rng, id: number): string {
  const [a, b, c] = [rng.pick(SURNAMES), rng.pick(SURNAMES), rng.pick(SURNAMES)];
  if (id % 3 === 2) return `${a}, ${b} and ${c}`;
  return rng.chance(0.25) ? `${a} - ${b}` : `${a} ${rng.pick(COMPANY_SUFFIXES)}`;
}

function generateCounterparties(rng: Rng, createdAt: string): CounterpartyRow[] {
  return Array.from({ length: COUNTERPARTY_COUNT }, (_, i) => ({
    counterparty_id: i + 1,
    counterparty_legal_name: companyName(rng, i + 1),
    legal_address_id: rng.int(1, ADDRESS_COUNT),
    commercial_contact: personName(rng),
    delivery_contact: personName(rng),
    created_at: createdAt,
    last_updated: createdAt,
  }));
}

/** Staff names are drawn without replacement so no two share an email address. */
function generateStaff(rng: Rng, createdAt: string): StaffRow[] {
  const firsts = shuffle(rng, [...FIRST_NAMES]);
  const lasts = shuffle(rng, [...SURNAMES]);
  return Array.from({ length: STAFF_COUNT }, (_, i) => {
    const [first, last] = [firsts[i]!, lasts[i]!];
    return {
      staff_id: i + 1,
      first_name: first,
      last_name: last,
      department_id: rng.int(1, DEPARTMENTS.length),
      email_address: `${first}.${last}@terrifictotes.com`.toLowerCase(),
      created_at: createdAt,
      last_updated: createdAt,
    };
  });
}

function generateFixedTables(seed: number): TotesysBatch {
  const loaded = formatTimestamp(EPOCH_MS);
  const peopleLoaded = formatTimestamp(PEOPLE_LOADED_MS);
  const stamp = { created_at: loaded, last_updated: loaded };
  return {
    address: generateAddresses(createRng(seed, 'address'), loaded),
    currency: CURRENCY_CODES.map((code, i) => ({ currency_id: i + 1, currency_code: code, ...stamp })),
    department: DEPARTMENTS.map(([name, location, manager], i) => ({
      department_id: i + 1,
      department_name: name,
      location,
      manager,
      ...stamp,
    })),
    payment_type: PAYMENT_TYPE_NAMES.map((name, i) => ({
      payment_type_id: i + 1,
      payment_type_name: name,
      ...stamp,
    })),
    counterparty: generateCounterparties(createRng(seed, 'counterparty'), peopleLoaded),
    staff: generateStaff(createRng(seed, 'staff'), peopleLoaded),
  };
}

// ---------------------------------------------------------------------------------------------
// The growing tables: designs and orders spread over Nov 2022 – Feb 2025 office hours.

/** Midnight of every weekday from the first order's day to the profile's last day. */
function weekdays(): number[] {
  const days: number[] = [];
  for (let day = startOfDay(FIRST_ORDER_MS); day <= PROFILE_END_MS; day += DAY_MS) {
    const weekday = new Date(day).getUTCDay();
    if (weekday !== 0 && weekday !== 6) days.push(day);
  }
  return days;
}

/** n sorted office-hours instants; with rampUp, early days get fewer (volume grew at first). */
function sampleOfficeHours(rng: Rng, n: number, rampUp: boolean): Float64Array {
  const days = weekdays();
  const cumulative: number[] = [];
  let total = 0;
  for (const day of days) {
    total += rampUp ? Math.min(1, 0.08 + (day - days[0]!) / DAY_MS / RAMP_UP_DAYS) : 1;
    cumulative.push(total);
  }
  const times = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng.next() * total;
    let lo = 0;
    let hi = days.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    const day = days[lo]!;
    const opens = Math.max(day + OFFICE_OPENS_MS, FIRST_ORDER_MS);
    times[i] = opens + Math.floor(rng.next() * (day + OFFICE_CLOSES_MS - opens));
  }
  return times.sort();
}

function generateDesigns(rng: Rng, count: number): { rows: DesignRow[]; createdMs: Float64Array } {
  const launch = Math.min(count, LAUNCH_DESIGNS);
  const later = sampleOfficeHours(rng, count - launch, false);
  const createdMs = new Float64Array(count);
  createdMs.fill(EPOCH_MS, 0, launch);
  createdMs.set(later, launch);
  const rows = Array.from(createdMs, (ms, i) => {
    const name = rng.pick(MATERIALS);
    const at = formatTimestamp(ms);
    return {
      design_id: i + 1,
      created_at: at,
      design_name: name,
      file_location: rng.pick(FILE_LOCATIONS),
      file_name: designFileName(rng, name),
      last_updated: at,
    };
  });
  return { rows, createdMs };
}

/** How many rows each table gets at this scale. */
export function totesysRowCounts(scale: number): Record<TotesysTable, number> {
  const design = Math.max(1, Math.round(SCALE_1_ROWS.design * scale));
  const sales = Math.round(SCALE_1_ROWS.sales_order * scale);
  const purchases = Math.round(SCALE_1_ROWS.purchase_order * scale);
  return {
    address: ADDRESS_COUNT,
    currency: CURRENCY_CODES.length,
    department: DEPARTMENTS.length,
    design,
    payment_type: PAYMENT_TYPE_NAMES.length,
    counterparty: COUNTERPARTY_COUNT,
    staff: STAFF_COUNT,
    sales_order: sales,
    purchase_order: purchases,
    transaction: sales + purchases,
    payment: sales + purchases,
  };
}

/** What a new order needs to know about the tables it references: how many rows each has. */
export interface ReferenceCounts {
  address: number;
  counterparty: number;
  currency: number;
  design: number;
  staff: number;
}

/** An order's terms before it has an id or a date: shared by the seed and the simulator. */
export interface SalesOrderDraft {
  design_id: number;
  staff_id: number;
  counterparty_id: number;
  units_sold: number;
  unit_price: string;
  currency_id: number;
  agreed_delivery_location_id: number;
  deliveryInDays: number;
  paymentInDays: number;
  /** payment_amount = units × unit price, exact. */
  amount: string;
}

export interface PurchaseOrderDraft {
  staff_id: number;
  counterparty_id: number;
  item_code: string;
  item_quantity: number;
  item_unit_price: string;
  currency_id: number;
  agreed_delivery_location_id: number;
  deliveryInDays: number;
  paymentInDays: number;
  amount: string;
}

function draftSalesOrder(rng: Rng, refs: ReferenceCounts): SalesOrderDraft {
  const units = rng.int(1_000, 100_000);
  const priceCents = rng.int(200, 400);
  return {
    design_id: rng.int(1, refs.design),
    staff_id: rng.int(1, refs.staff),
    counterparty_id: rng.int(1, refs.counterparty),
    units_sold: units,
    unit_price: formatCents(priceCents),
    currency_id: rng.int(1, refs.currency),
    agreed_delivery_location_id: rng.int(1, refs.address),
    deliveryInDays: rng.int(0, 7),
    paymentInDays: rng.int(0, 7),
    amount: formatCents(units * priceCents),
  };
}

function draftPurchaseOrder(rng: Rng, refs: ReferenceCounts): PurchaseOrderDraft {
  const quantity = rng.int(1, 999);
  const priceCents = rng.int(100, 99_999);
  return {
    staff_id: rng.int(1, refs.staff),
    counterparty_id: rng.int(1, refs.counterparty),
    item_code: chars(rng, UPPER_ALNUM, 7),
    item_quantity: quantity,
    item_unit_price: formatCents(priceCents),
    currency_id: rng.int(1, refs.currency),
    agreed_delivery_location_id: rng.int(1, refs.address),
    deliveryInDays: rng.int(0, 7),
    paymentInDays: rng.int(0, 7),
    amount: formatCents(quantity * priceCents),
  };
}

function companyAccountNumber(rng: Rng): number {
  return rng.int(10_000_000, 99_999_999);
}

/** payment_type_id of each name in the seeded payment_type table. */
const PAYMENT_TYPE_ID = Object.fromEntries(PAYMENT_TYPE_NAMES.map((n, i) => [n, i + 1])) as Record<
  PaymentTypeName,
  number
>;

/**
 * The real data holds orders whose delivery date moved weeks after creation while last_updated did
 * not: a silent edit. About one order in 300 gets one.
 */
const SILENT_DELIVERY_EDIT_CHANCE = 1 / 300;

function* generateOrders(
  seed: number,
  counts: Record<TotesysTable, number>,
  designCreatedMs: Float64Array,
  batchSize: number,
): Generator<TotesysBatch> {
  const rng = createRng(seed, 'orders');
  const total = counts.transaction;
  const times = sampleOfficeHours(rng, total, true);
  // Exactly the planned number of each kind, interleaved at random.
  const isSale = shuffle(
    rng,
    Array.from({ length: total }, (_, i) => i < counts.sales_order),
  );
  const refs: ReferenceCounts = { ...counts, design: 0 };
  let salesId = 0;
  let purchaseId = 0;
  let designsLive = 0;
  const newBatch = (): Required<
    Pick<TotesysBatch, 'sales_order' | 'purchase_order' | 'transaction' | 'payment'>
  > => ({
    sales_order: [],
    purchase_order: [],
    transaction: [],
    payment: [],
  });
  let batch = newBatch();
  for (let i = 0; i < total; i++) {
    const createdMs = times[i]!;
    // Only designs that existed when the order was placed can be sold.
    while (designsLive < designCreatedMs.length && designCreatedMs[designsLive]! <= createdMs) designsLive++;
    refs.design = designsLive;
    const created = formatTimestamp(createdMs);
    const day = startOfDay(createdMs);
    const draft = isSale[i] ? draftSalesOrder(rng, refs) : draftPurchaseOrder(rng, refs);
    const deliveryDays =
      draft.deliveryInDays + (rng.chance(SILENT_DELIVERY_EDIT_CHANCE) ? rng.int(8, 30) : 0);
    const terms = {
      created_at: created,
      last_updated: created,
      agreed_delivery_date: formatDate(day + deliveryDays * DAY_MS),
      agreed_payment_date: formatDate(day + draft.paymentInDays * DAY_MS),
    };
    const transactionId = i + 1;
    let paymentType: PaymentTypeName;
    if ('units_sold' in draft) {
      const { deliveryInDays: _d, paymentInDays: _p, amount: _a, ...order } = draft;
      batch.sales_order.push({ sales_order_id: ++salesId, ...terms, ...order });
      batch.transaction.push({
        transaction_id: transactionId,
        transaction_type: 'SALE',
        sales_order_id: salesId,
        purchase_order_id: null,
        created_at: created,
        last_updated: created,
      });
      paymentType = 'SALES_RECEIPT';
    } else {
      const { deliveryInDays: _d, paymentInDays: _p, amount: _a, ...order } = draft;
      batch.purchase_order.push({ purchase_order_id: ++purchaseId, ...terms, ...order });
      batch.transaction.push({
        transaction_id: transactionId,
        transaction_type: 'PURCHASE',
        sales_order_id: null,
        purchase_order_id: purchaseId,
        created_at: created,
        last_updated: created,
      });
      paymentType = 'PURCHASE_PAYMENT';
    }
    // Payments start unpaid; the morning run (07:55) a few days later marks them paid. Those not yet
    // due at the profile's end are still unpaid, which leaves `totes simulate` some to flip.
    const settledMs = day + rng.int(1, 6) * DAY_MS + 7 * HOUR_MS + 55 * 60_000 + rng.int(0, 59_999);
    const paid = settledMs <= PROFILE_END_MS;
    batch.payment.push({
      payment_id: transactionId,
      created_at: created,
      last_updated: paid ? formatTimestamp(settledMs) : created,
      transaction_id: transactionId,
      counterparty_id: draft.counterparty_id,
      payment_amount: draft.amount,
      currency_id: draft.currency_id,
      payment_type_id: PAYMENT_TYPE_ID[paymentType],
      paid,
      payment_date: terms.agreed_payment_date,
      company_ac_number: companyAccountNumber(rng),
      counterparty_ac_number: counterpartyAccountNumber(seed, draft.counterparty_id),
    });
    if (batch.transaction.length === batchSize) {
      yield batch;
      batch = newBatch();
    }
  }
  if (batch.transaction.length > 0) yield batch;
}

export interface GenerateOptions {
  /** Multiplies designs, orders, transactions and payments; 1 ≈ the early-2025 profile. */
  scale: number;
  seed: number;
  /** Orders (and their transactions and payments) per batch. */
  batchSize?: number;
}

/**
 * The whole data set as batches in foreign-key order: first the fixed tables and every design,
 * then orders with their transactions and payments, `batchSize` at a time so memory stays bounded
 * at any scale. Ids are 1..n per table, in creation order.
 */
export function* generateTotesys(options: GenerateOptions): Generator<TotesysBatch> {
  if (!(options.scale > 0) || !Number.isFinite(options.scale)) throw new RangeError('scale must be > 0');
  const counts = totesysRowCounts(options.scale);
  const designs = generateDesigns(createRng(options.seed, 'design'), counts.design);
  yield { ...generateFixedTables(options.seed), design: designs.rows };
  yield* generateOrders(options.seed, counts, designs.createdMs, options.batchSize ?? 5_000);
}

// ---------------------------------------------------------------------------------------------
// The simulator's changes: what to do next, decided from a seeded stream and the current state.

export const CHANGE_KINDS = [
  'new_sales_order',
  'new_purchase_order',
  'payment_paid',
  'new_design',
  'design_edit',
  'address_edit',
  'department_edit',
  'counterparty_edit',
  'staff_edit',
  'order_edit',
  'silent_edit',
] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

/**
 * Relative frequency of each kind. New orders and paid flips have equal weight so the number of
 * unpaid payments stays level over a long run; edits are occasional.
 */
export const CHANGE_WEIGHTS: Readonly<Record<ChangeKind, number>> = {
  new_sales_order: 26,
  new_purchase_order: 11,
  payment_paid: 37,
  new_design: 1,
  design_edit: 3,
  address_edit: 3,
  department_edit: 1,
  counterparty_edit: 3,
  staff_edit: 2,
  order_edit: 8,
  silent_edit: 5,
};

export type EditableTable =
  'address' | 'counterparty' | 'department' | 'design' | 'staff' | 'sales_order' | 'purchase_order';

/** A new value, or (for the text date columns) "move this date on by n days". */
export type EditValue = string | number | null | { readonly addDays: number };

/** An UPDATE of one row by primary key. `touch` = also set last_updated to now, as totesys usually does. */
export interface RowEdit {
  table: EditableTable;
  id: number;
  set: Readonly<Record<string, EditValue>>;
  touch: boolean;
}

export interface NewDesign {
  design_name: string;
  file_location: string;
  file_name: string;
}

export type PlannedChange =
  | { kind: 'new_sales_order'; order: SalesOrderDraft; companyAcNumber: number; counterpartyAcNumber: number }
  | {
      kind: 'new_purchase_order';
      order: PurchaseOrderDraft;
      companyAcNumber: number;
      counterpartyAcNumber: number;
    }
  | { kind: 'payment_paid'; paymentId: number }
  | { kind: 'new_design'; design: NewDesign }
  | {
      kind:
        | 'design_edit'
        | 'address_edit'
        | 'department_edit'
        | 'counterparty_edit'
        | 'staff_edit'
        | 'order_edit'
        | 'silent_edit';
      edit: RowEdit;
    };

/** What the planner needs to know about the database: the highest id of each table it picks from. */
export interface SimulationState {
  maxId: Record<EditableTable | 'currency', number>;
  /** Unpaid payments, oldest first: they are settled in order. */
  unpaidPaymentIds: number[];
}

export interface ChangePlanner {
  next(state: Readonly<SimulationState>): PlannedChange;
}

/** A seeded source of changes; the same seed and states give the same changes. */
export function createChangePlanner(seed: number): ChangePlanner {
  const rng = createRng(seed, 'simulate');
  const totalWeight = CHANGE_KINDS.reduce((sum, k) => sum + CHANGE_WEIGHTS[k], 0);
  const pickKind = (): ChangeKind => {
    let u = rng.next() * totalWeight;
    // `?? 'silent_edit'` only guards against float rounding at the very top of the range.
    return CHANGE_KINDS.find((kind) => (u -= CHANGE_WEIGHTS[kind]) < 0) ?? 'silent_edit';
  };
  const someId = (state: Readonly<SimulationState>, table: EditableTable) => rng.int(1, state.maxId[table]);
  const edit = (
    state: Readonly<SimulationState>,
    table: EditableTable,
    set: Record<string, EditValue>,
    touch = true,
  ): RowEdit => ({ table, id: someId(state, table), set, touch });
  const someOrder = (): 'sales_order' | 'purchase_order' =>
    rng.chance(0.7) ? 'sales_order' : 'purchase_order';

  function plan(kind: ChangeKind, state: Readonly<SimulationState>): PlannedChange {
    const refs: ReferenceCounts = state.maxId;
    switch (kind) {
      case 'new_sales_order': {
        const order = draftSalesOrder(rng, refs);
        return {
          kind,
          order,
          companyAcNumber: companyAccountNumber(rng),
          counterpartyAcNumber: counterpartyAccountNumber(seed, order.counterparty_id),
        };
      }
      case 'new_purchase_order': {
        const order = draftPurchaseOrder(rng, refs);
        return {
          kind,
          order,
          companyAcNumber: companyAccountNumber(rng),
          counterpartyAcNumber: counterpartyAccountNumber(seed, order.counterparty_id),
        };
      }
      case 'payment_paid':
        return { kind, paymentId: state.unpaidPaymentIds[0]! };
      case 'new_design': {
        const name = rng.pick(MATERIALS);
        return {
          kind,
          design: {
            design_name: name,
            file_location: rng.pick(FILE_LOCATIONS),
            file_name: designFileName(rng, name),
          },
        };
      }
      case 'design_edit':
        return {
          kind,
          edit: edit(
            state,
            'design',
            rng.chance(0.5)
              ? { file_location: rng.pick(FILE_LOCATIONS) }
              : { design_name: rng.pick(MATERIALS) },
          ),
        };
      case 'address_edit':
        return {
          kind,
          edit: edit(
            state,
            'address',
            rng.chance(0.6)
              ? { phone: phoneNumber(rng) }
              : { address_line_2: rng.chance(0.5) ? streetName(rng) : null },
          ),
        };
      case 'department_edit': {
        const id = someId(state, 'department');
        const names = DEPARTMENT_NAMES[id - 1] ?? [`Department ${id}`];
        const set: Record<string, EditValue> = rng.chance(0.5)
          ? { department_name: rng.pick(names) }
          : rng.chance(0.5)
            ? { manager: `${rng.pick(FIRST_NAMES)} ${rng.pick(SURNAMES)}` }
            : { location: rng.pick(LOCATIONS) };
        return { kind, edit: { table: 'department', id, set, touch: true } };
      }
      case 'counterparty_edit':
        return {
          kind,
          edit: edit(
            state,
            'counterparty',
            rng.chance(0.5) ? { commercial_contact: personName(rng) } : { delivery_contact: personName(rng) },
          ),
        };
      case 'staff_edit':
        return { kind, edit: edit(state, 'staff', { department_id: rng.int(1, state.maxId.department) }) };
      case 'order_edit': {
        const table = someOrder();
        const set: Record<string, EditValue> = rng.chance(0.6)
          ? { agreed_delivery_date: { addDays: rng.int(1, 14) } }
          : { agreed_delivery_location_id: rng.int(1, state.maxId.address) };
        return { kind, edit: edit(state, table, set) };
      }
      case 'silent_edit': {
        // Edits that leave last_updated alone, as some real totesys updates do (the public export has
        // delivery dates moved weeks after creation on rows whose last_updated never changed).
        const u = rng.next();
        const silent =
          u < 0.5
            ? edit(state, someOrder(), { agreed_delivery_date: { addDays: rng.int(8, 30) } }, false)
            : u < 0.75
              ? edit(state, 'address', { phone: phoneNumber(rng) }, false)
              : edit(state, 'counterparty', { delivery_contact: personName(rng) }, false);
        return { kind, edit: silent };
      }
    }
    return kind satisfies never;
  }

  return {
    next(state) {
      let kind = pickKind();
      // Nothing left to settle: do business instead, so the requested rate is kept.
      if (kind === 'payment_paid' && state.unpaidPaymentIds.length === 0) kind = 'new_sales_order';
      return plan(kind, state);
    },
  };
}

// SQLite C API wrapper: error texts always name the database file and the failing statement.
#include "cluster/workspace/Sqlite.h"

#include <sqlite3.h>

#include <cmath>
#include <limits>

namespace fathom::cluster::sql {

namespace {

QString statementHead(const QString& sql) {
  QString s = sql.simplified();
  if (s.size() > 60) s = s.left(57) + QStringLiteral("...");
  return s;
}

}  // namespace

Database::~Database() { close(); }

bool Database::open(const QString& path, QString* error) {
  close();
  m_path = path;
  const QByteArray p = path.toUtf8();
  const int rc = sqlite3_open_v2(p.constData(), &m_db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    if (error) {
      *error = QStringLiteral("%1: cannot open the database: %2").arg(path,
                                                                    m_db ? QString::fromUtf8(sqlite3_errmsg(m_db))
                                                                         : QString::fromUtf8(sqlite3_errstr(rc)));
    }
    close();
    return false;
  }
  // Another workbench (or a rescan in a second process) may hold the write lock for a moment.
  sqlite3_busy_timeout(m_db, 5000);
  sqlite3_extended_result_codes(m_db, 1);
  return true;
}

void Database::close() {
  if (m_db) {
    sqlite3_close_v2(m_db);
    m_db = nullptr;
  }
}

bool Database::exec(const QString& sql, QString* error) {
  if (!m_db) {
    if (error) *error = QStringLiteral("database is not open");
    return false;
  }
  char* msg = nullptr;
  const QByteArray s = sql.toUtf8();
  const int rc = sqlite3_exec(m_db, s.constData(), nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    if (error) {
      *error = QStringLiteral("%1: '%2' failed: %3")
                   .arg(m_path, statementHead(sql), msg ? QString::fromUtf8(msg) : QString::fromUtf8(sqlite3_errstr(rc)));
    }
    sqlite3_free(msg);
    return false;
  }
  return true;
}

QString Database::queryString(const QString& sql, QString* error) {
  const QByteArray s = sql.toUtf8();
  Statement st(*this, s.constData());
  if (!st.ok()) {
    if (error) *error = st.error();
    return {};
  }
  if (st.step()) return st.text(0);
  if (!st.ok() && error) *error = st.error();
  return {};
}

qint64 Database::queryInt(const QString& sql, qint64 fallback, QString* error) {
  const QByteArray s = sql.toUtf8();
  Statement st(*this, s.constData());
  if (!st.ok()) {
    if (error) *error = st.error();
    return fallback;
  }
  if (st.step() && !st.isNull(0)) return st.integer(0);
  if (!st.ok() && error) *error = st.error();
  return fallback;
}

QString Database::lastError() const {
  return m_db ? QString::fromUtf8(sqlite3_errmsg(m_db)) : QStringLiteral("database is not open");
}

qint64 Database::lastInsertRowId() const { return m_db ? sqlite3_last_insert_rowid(m_db) : 0; }

int Database::changes() const { return m_db ? sqlite3_changes(m_db) : 0; }

// ---- Statement ------------------------------------------------------------------------------

Statement::Statement(Database& db, const char* sql) : m_db(db) {
  if (!db.handle()) {
    m_ok = false;
    m_error = QStringLiteral("database is not open");
    return;
  }
  const int rc = sqlite3_prepare_v2(db.handle(), sql, -1, &m_stmt, nullptr);
  if (rc != SQLITE_OK) {
    m_ok = false;
    m_error = QStringLiteral("%1: cannot prepare '%2': %3")
                  .arg(db.path(), statementHead(QString::fromUtf8(sql)), QString::fromUtf8(sqlite3_errmsg(db.handle())));
  }
}

Statement::~Statement() {
  if (m_stmt) sqlite3_finalize(m_stmt);
}

void Statement::fail(int rc) {
  m_ok = false;
  m_error = QStringLiteral("%1: '%2' failed: %3")
                .arg(m_db.path(), statementHead(QString::fromUtf8(m_stmt ? sqlite3_sql(m_stmt) : "")),
                     QString::fromUtf8(m_db.handle() ? sqlite3_errmsg(m_db.handle()) : sqlite3_errstr(rc)));
}

Statement& Statement::bind(int i, qint64 v) {
  if (m_stmt) sqlite3_bind_int64(m_stmt, i, v);
  return *this;
}

Statement& Statement::bind(int i, double v) {
  if (!m_stmt) return *this;
  if (std::isfinite(v)) sqlite3_bind_double(m_stmt, i, v);
  else sqlite3_bind_null(m_stmt, i);
  return *this;
}

Statement& Statement::bind(int i, const QString& v) {
  if (!m_stmt) return *this;
  if (v.isNull()) {
    sqlite3_bind_null(m_stmt, i);
  } else {
    const QByteArray b = v.toUtf8();
    sqlite3_bind_text(m_stmt, i, b.constData(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
  }
  return *this;
}

Statement& Statement::bindTime(int i, const QDateTime& t) {
  if (!m_stmt) return *this;
  if (t.isValid()) sqlite3_bind_int64(m_stmt, i, t.toMSecsSinceEpoch());
  else sqlite3_bind_null(m_stmt, i);
  return *this;
}

Statement& Statement::bindNull(int i) {
  if (m_stmt) sqlite3_bind_null(m_stmt, i);
  return *this;
}

bool Statement::step() {
  if (!m_stmt || !m_ok) return false;
  const int rc = sqlite3_step(m_stmt);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) fail(rc);
  return false;
}

bool Statement::run() {
  while (step()) {
  }
  return m_ok;
}

void Statement::reset() {
  if (!m_stmt) return;
  sqlite3_reset(m_stmt);
  sqlite3_clear_bindings(m_stmt);
}

bool Statement::isNull(int col) const { return sqlite3_column_type(m_stmt, col) == SQLITE_NULL; }

qint64 Statement::integer(int col) const { return sqlite3_column_int64(m_stmt, col); }

double Statement::real(int col) const {
  if (isNull(col)) return std::numeric_limits<double>::quiet_NaN();
  return sqlite3_column_double(m_stmt, col);
}

QString Statement::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(m_stmt, col));
  if (!p) return {};
  return QString::fromUtf8(p, sqlite3_column_bytes(m_stmt, col));
}

QDateTime Statement::time(int col) const {
  if (isNull(col)) return {};
  return QDateTime::fromMSecsSinceEpoch(sqlite3_column_int64(m_stmt, col));
}

// ---- Transaction ----------------------------------------------------------------------------

Transaction::Transaction(Database& db) : m_db(db) { m_began = db.exec(QStringLiteral("BEGIN IMMEDIATE")); }

Transaction::~Transaction() {
  if (m_began && !m_done) m_db.exec(QStringLiteral("ROLLBACK"));
}

bool Transaction::commit(QString* error) {
  if (!m_began || m_done) return false;
  m_done = m_db.exec(QStringLiteral("COMMIT"), error);
  if (!m_done) {
    m_db.exec(QStringLiteral("ROLLBACK"));
    m_done = true;
    return false;
  }
  return true;
}

}  // namespace fathom::cluster::sql

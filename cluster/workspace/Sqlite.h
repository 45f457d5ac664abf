// A thin RAII layer over SQLite's C API for the workspace registry: one connection, prepared
// statements with typed binds, transactions. Not thread-safe: the registry lives on one thread.
#pragma once

#include <QByteArray>
#include <QDateTime>
#include <QString>

#include <cstdint>

struct sqlite3;
struct sqlite3_stmt;

namespace fathom::cluster::sql {

class Database {
 public:
  Database() = default;
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Opens (creating) the file; `error` gets "<path>: <sqlite message>" on failure.
  bool open(const QString& path, QString* error);
  void close();
  bool isOpen() const { return m_db != nullptr; }
  sqlite3* handle() const { return m_db; }
  const QString& path() const { return m_path; }

  // Runs one or more statements without results. On failure `error` names the statement's start.
  bool exec(const QString& sql, QString* error = nullptr);
  // The first column of the first row as text ("" when no row), for pragmas.
  QString queryString(const QString& sql, QString* error = nullptr);
  qint64 queryInt(const QString& sql, qint64 fallback = 0, QString* error = nullptr);

  QString lastError() const;
  qint64 lastInsertRowId() const;
  int changes() const;

 private:
  sqlite3* m_db = nullptr;
  QString m_path;
};

// A prepared statement. Bind indexes are 1-based as in SQLite. step() returns true while a row is
// available; run() steps to completion and reports failure through ok()/error().
class Statement {
 public:
  Statement(Database& db, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return m_ok; }
  const QString& error() const { return m_error; }

  Statement& bind(int i, qint64 v);
  Statement& bind(int i, int v) { return bind(i, static_cast<qint64>(v)); }
  Statement& bind(int i, bool v) { return bind(i, static_cast<qint64>(v ? 1 : 0)); }
  // NaN and infinities are stored as NULL (SQLite has no NaN) and read back as NaN by real().
  Statement& bind(int i, double v);
  Statement& bind(int i, const QString& v);  // a null QString binds NULL
  Statement& bind(int i, const char*) = delete;  // would silently bind as bool; wrap in QString
  Statement& bind(int i, long v) { return bind(i, static_cast<qint64>(v)); }  // int64_t on LP64
  Statement& bindTime(int i, const QDateTime& t);  // ms since the epoch, NULL when invalid
  Statement& bindNull(int i);

  bool step();
  bool run();  // steps to SQLITE_DONE; false (and error()) on failure
  void reset();  // for re-use with new binds

  bool isNull(int col) const;
  qint64 integer(int col) const;
  double real(int col) const;  // NaN for NULL
  QString text(int col) const;
  QDateTime time(int col) const;  // invalid for NULL

 private:
  void fail(int rc);

  Database& m_db;
  sqlite3_stmt* m_stmt = nullptr;
  bool m_ok = true;
  QString m_error;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  bool ok() const { return m_began; }
  bool commit(QString* error = nullptr);

 private:
  Database& m_db;
  bool m_began = false;
  bool m_done = false;
};

}  // namespace fathom::cluster::sql

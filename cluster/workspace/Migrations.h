// Numbered schema migrations of workspace.db (ARCHITECTURE.md §5). Migration N moves the schema
// from version N-1 to N inside one transaction; schema_version holds one row per applied migration.
// Migrations are append-only: never edit a released one, add the next number.
#pragma once

#include <QString>
#include <QStringList>

namespace fathom::cluster {
namespace sql {
class Database;
}

struct Migration {
  int version;
  const char* description;
  const char* sql;
};

// All migrations, in order (version 1, 2, ...).
const QList<Migration>& workspaceMigrations();
// The highest version this build knows.
int latestSchemaVersion();
// The version recorded in `db` (0 for a new, empty database); -1 with `error` set on failure.
int schemaVersionOf(sql::Database& db, QString* error);
// Applies the migrations after the database's version up to `target` (-1 = latest). Refuses a
// database newer than this build (downgrades would lose data). `applied` gets "N: description".
bool migrateDatabase(sql::Database& db, int target, QString* error, QStringList* applied = nullptr);

}  // namespace fathom::cluster

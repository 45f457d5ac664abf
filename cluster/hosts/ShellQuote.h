// Quoting for commands that run in a remote POSIX shell (sh, bash, dash, zsh). Every value that
// reaches a remote command line goes through shellQuote(): nothing from a config, a path or a run
// name is ever pasted into a command unquoted.
#pragma once

#include <QString>
#include <QStringList>

namespace fathom::cluster {

// 'value' with every ' written as '\'' ; plain words made only of [A-Za-z0-9@%_+=:,./-] are left
// as they are (readable previews). Newlines, $, `, ;, spaces and quotes are all inert inside.
QString shellQuote(const QString& value);

// Each element quoted, joined by spaces: a command line for `sh -c` or an SSH exec request.
QString shellJoin(const QStringList& argv);

// NAME=value assignments with the value quoted; NAME must be a valid shell identifier (anything
// else is dropped, so an environment entry can never smuggle in a command).
QString shellAssign(const QString& nameEqualsValue);

}  // namespace fathom::cluster

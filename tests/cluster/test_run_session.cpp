#include <QtTest>
class T : public QObject { Q_OBJECT private slots: void placeholder() { QSKIP("not written yet"); } };
QTEST_GUILESS_MAIN(T)
#include "test_run_session.moc"

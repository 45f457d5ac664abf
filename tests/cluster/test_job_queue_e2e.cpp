#include <QtTest>
class T : public QObject { Q_OBJECT private slots: void placeholder() { QSKIP("not written yet"); } };
QTEST_GUILESS_MAIN(T)
#include "test_job_queue_e2e.moc"

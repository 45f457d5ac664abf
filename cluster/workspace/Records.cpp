// Meta-type registration of the cluster value types.
#include "cluster/workspace/Records.h"

namespace fathom::cluster {

void registerMetaTypes() {
  static const bool once = [] {
    qRegisterMetaType<RunRecord>();
    qRegisterMetaType<CheckpointRecord>();
    qRegisterMetaType<MetricPoint>();
    qRegisterMetaType<EventItem>();
    qRegisterMetaType<SampleItem>();
    qRegisterMetaType<QVector<MetricPoint>>();
    qRegisterMetaType<QVector<EventItem>>();
    qRegisterMetaType<QVector<SampleItem>>();
    return true;
  }();
  Q_UNUSED(once);
}

}  // namespace fathom::cluster

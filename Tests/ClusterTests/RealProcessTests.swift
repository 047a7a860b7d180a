import Testing

/// Every test that starts real `kvd` processes, run one at a time: they share two cores, and several
/// clusters at once would turn deadlines into noise. Each suite is an extension of this one.
@Suite(.serialized)
enum RealProcessTests {}

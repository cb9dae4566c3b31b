//! Case corpus loading and the replay, live and guest stages

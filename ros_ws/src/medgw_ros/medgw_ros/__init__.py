"""medgw_ros: the medgw gateway as a ROS 2 node."""
